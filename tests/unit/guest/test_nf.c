/* Unit tests for cgv-nf's reply format and its shared request counter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nf_counter.h"
#include "nf_reply.h"

static void test_reply_format(void **state)
{
    uint8_t out[NF_MAX_REPLY];
    const char *req = "udpping 0011223344556677 3";
    size_t n;

    (void)state;
    n = nf_reply_format(out, sizeof(out), "demo-0", 17, (const uint8_t *)req,
                        strlen(req));
    assert_int_equal(n, strlen("cgv-nf demo-0 17 ") + strlen(req));
    assert_memory_equal(out, "cgv-nf demo-0 17 udpping 0011223344556677 3", n);
    /* empty request: header only */
    n = nf_reply_format(out, sizeof(out), "demo-0", 1, NULL, 0);
    assert_int_equal(n, strlen("cgv-nf demo-0 1 "));
}

static void test_reply_truncates(void **state)
{
    uint8_t req[NF_MAX_REQUEST], out[NF_MAX_REPLY + 8];
    size_t n;

    (void)state;
    memset(req, 'x', sizeof(req));
    n = nf_reply_format(out, NF_MAX_REPLY, "a-rather-long-vm-name-0123456789", 18446744073709551615ULL,
                        req, sizeof(req));
    assert_true(n <= NF_MAX_REPLY);
    assert_memory_equal(out, "cgv-nf a-rather-long-vm-name-0123456789 18446744073709551615 ",
                        61);
    n = nf_reply_format(out, 30, "demo-0", 5, req, sizeof(req));
    assert_int_equal(n, 30);
    assert_memory_equal(out, "cgv-nf demo-0 5 xxxxxxxxxxxxxx", 30);
    /* the header itself does not fit */
    assert_int_equal(nf_reply_format(out, 10, "demo-0", 5, req, sizeof(req)), 0);
}

static void test_counter_shared(void **state)
{
    char path[] = "/tmp/cgv-test-counter-XXXXXX";
    struct nf_counter w, r, r2;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    /* reader before the writer initialised it: size 0, not usable yet */
    assert_int_equal(nf_counter_open_ro(&r, path), -1);
    assert_int_equal(nf_counter_open_rw(&w, path), 0);
    assert_int_equal(nf_counter_get(&w), 0);
    assert_int_equal(nf_counter_open_ro(&r, path), 0);
    assert_int_equal(nf_counter_get(&r), 0);
    nf_counter_set(&w, 41);
    nf_counter_set(&w, 42);
    assert_int_equal(nf_counter_get(&r), 42);
    nf_counter_set(&r, 7); /* reader cannot write */
    assert_int_equal(nf_counter_get(&r), 42);
    /* a restarted writer carries on from the stored count */
    nf_counter_close(&w);
    assert_int_equal(nf_counter_open_rw(&w, path), 0);
    assert_int_equal(nf_counter_get(&w), 42);
    nf_counter_set(&w, 43);
    assert_int_equal(nf_counter_get(&r), 43);
    nf_counter_close(&w);
    nf_counter_close(&r);
    assert_int_equal(nf_counter_get(&r), 0);
    unlink(path);
    errno = 0;
    assert_int_equal(nf_counter_open_ro(&r2, path), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_counter_bad_file_reset(void **state)
{
    char path[] = "/tmp/cgv-test-counter-XXXXXX";
    struct nf_counter w;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "garbage garbage!", 16), 16);
    close(fd);
    assert_int_equal(nf_counter_open_rw(&w, path), 0);
    assert_int_equal(nf_counter_get(&w), 0);
    nf_counter_close(&w);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_format),
        cmocka_unit_test(test_reply_truncates),
        cmocka_unit_test(test_counter_shared),
        cmocka_unit_test(test_counter_bad_file_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
