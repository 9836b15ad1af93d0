/* loop.h — cgvd's single event loop: epoll for file descriptors, a sorted
 * list of one-shot timers, signals through signalfd. Everything that touches
 * cgvd's state runs on this loop's thread. */
#ifndef LOOP_H
#define LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "cgv_common.h"

struct loop;
struct loop_timer;

typedef void (*loop_fd_cb)(struct loop *l, int fd, uint32_t events, void *opaque);
typedef void (*loop_timer_cb)(struct loop *l, void *opaque);
/* Called before each wait; returns the longest the loop may sleep in ms
 * (-1: no limit). Used for libraries with their own timeouts (MHD). */
typedef int64_t (*loop_prepare_cb)(struct loop *l, void *opaque);

int loop_new(struct loop **out, struct cgv_error *err) CGV_WUR;
void loop_free(struct loop *l);

/* Watch fd (not owned) for EPOLLIN/EPOLLOUT...; one watch per fd. */
int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *opaque,
                struct cgv_error *err) CGV_WUR;
int loop_mod_fd(struct loop *l, int fd, uint32_t events);
/* Safe to call from inside any callback, including fd's own. */
void loop_del_fd(struct loop *l, int fd);

/* One-shot timer after delay_ms. The handle is valid until the callback
 * starts or loop_timer_cancel; callers clear their copy in the callback. */
struct loop_timer *loop_timer_add(struct loop *l, int64_t delay_ms, loop_timer_cb cb,
                                  void *opaque);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);

/* prepare runs before each wait, after (if not NULL) right after each wait
 * returns, whatever woke it — libmicrohttpd's external mode asks for both. */
typedef void (*loop_after_cb)(struct loop *l, void *opaque);
void loop_set_prepare(struct loop *l, loop_prepare_cb cb, loop_after_cb after,
                      void *opaque);

/* Run until loop_quit. Returns 0, or -1 if epoll itself failed. */
int loop_run(struct loop *l);
void loop_quit(struct loop *l);
bool loop_quitting(const struct loop *l);

#endif
