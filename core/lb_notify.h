/*
 * lb_notify.h: the service manager's readiness protocol (systemd's
 * sd_notify, Type=notify), spoken directly: one datagram to the unix
 * socket NOTIFY_SOCKET names (a path, or an abstract name after '@'), no
 * library. Without NOTIFY_SOCKET it does nothing. The master sends
 * READY=1 once its workers run (the first master, and a master a binary
 * upgrade started: the unit needs NotifyAccess=all), RELOADING=1 when a
 * reload begins and READY=1 when it ends, STOPPING=1 at shutdown.
 */
#ifndef LB_NOTIFY_H
#define LB_NOTIFY_H

/* Sends state ("READY=1", ...); RELOADING=1 gets MONOTONIC_USEC added,
 * as Type=notify-reload wants. LB_OK, LB_DECLINED (no NOTIFY_SOCKET) or
 * LB_ERROR (logged once). */
int lb_notify(const char *state);

#endif
