/* main.c — the cgv command line tool; everything is in cli_main() (cli.h). */
#include "cli.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
