/* The api container's health check: GET /ready on the local Gunicorn, exit 0 (healthy) or 1.
 *
 *   200                                        healthy, silent
 *   any other answer, a refused connection,
 *   or a connection closed without an answer   unhealthy: the reason on stdout (the health log)
 *   no answer within PENGUIN_HEALTH_WAIT s     healthy, but busy: said on stdout
 *
 * Why a slow answer counts as healthy: one Uvicorn worker serves its requests one after another,
 * so under overload the probe's request waits behind the queue (seconds without Nginx's admission
 * limit), and a strict probe would get an overloaded replica replaced exactly when its capacity
 * is needed. A hung worker is not left alone: Gunicorn restarts a worker that stops reporting for
 * PENGUIN_TIMEOUT seconds.
 *
 * Why C: Docker runs the probe every 20 s inside the replica's CPU quota. A Python start-up costs
 * ~40 ms of CPU; the Bash probe this replaces (Bash, /dev/tcp and `timeout` re-running the
 * script) cost several ms per run (service/README.md has the figures). A static program with one
 * socket costs a fraction of a millisecond. Built in the image's build stage (service/Dockerfile);
 * tests/service/test_healthcheck.py builds it with the host's compiler.
 *
 * Environment: PENGUIN_BIND (host:port, only the port is used; default port 8000) and
 * PENGUIN_HEALTH_WAIT (seconds, default 3).
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT 8000
#define DEFAULT_WAIT_S 3.0

static const char REQUEST[] = "GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Milliseconds left until `deadline`, at least 0. */
static int left_ms(double deadline) {
    double left = (deadline - now_s()) * 1000.0;
    return left > 0 ? (int)left + 1 : 0;
}

/* Waits for `events` on `fd` until `deadline`: 1 ready, 0 timed out. */
static int wait_for(int fd, short events, double deadline) {
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        int ready = poll(&pfd, 1, left_ms(deadline));
        if (ready >= 0) return ready > 0;
        if (errno != EINTR) return 1; /* let the next call report the error */
    }
}

static int busy(double wait_s) {
    printf("busy: no answer from /ready within %gs (overloaded, still serving)\n", wait_s);
    return 0;
}

static int port_from_bind(void) {
    const char *bind = getenv("PENGUIN_BIND");
    const char *colon = bind ? strrchr(bind, ':') : NULL;
    if (colon == NULL) return DEFAULT_PORT;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return (*end == '\0' && port > 0 && port < 65536) ? (int)port : DEFAULT_PORT;
}

static double wait_from_env(void) {
    const char *text = getenv("PENGUIN_HEALTH_WAIT");
    if (text == NULL || *text == '\0') return DEFAULT_WAIT_S;
    char *end;
    double wait_s = strtod(text, &end);
    return (*end == '\0' && wait_s > 0) ? wait_s : DEFAULT_WAIT_S;
}

int main(void) {
    const int port = port_from_bind();
    const double wait_s = wait_from_env();
    const double deadline = now_s() + wait_s;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        printf("unhealthy: no socket: %s\n", strerror(errno));
        return 1;
    }
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* A full listen backlog can stall even the connect: that is busy, not dead. */
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        if (errno != EINPROGRESS) {
            printf("unhealthy: cannot connect to 127.0.0.1:%d: %s\n", port, strerror(errno));
            return 1;
        }
        if (!wait_for(fd, POLLOUT, deadline)) return busy(wait_s);
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) {
            printf("unhealthy: cannot connect to 127.0.0.1:%d: %s\n", port, strerror(error));
            return 1;
        }
    }

    /* MSG_NOSIGNAL: a server that closes early is an error to report, not a silent SIGPIPE. */
    size_t sent = 0;
    while (sent < sizeof REQUEST - 1) {
        ssize_t n = send(fd, REQUEST + sent, sizeof REQUEST - 1 - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait_for(fd, POLLOUT, deadline)) return busy(wait_s);
        } else if (errno != EINTR) {
            printf("unhealthy: /ready closed the connection without an answer (%s)\n",
                   strerror(errno));
            return 1;
        }
    }

    /* The status line is all we need: "HTTP/1.x 200 ...". */
    char line[256];
    size_t got = 0;
    while (got < sizeof line - 1 && memchr(line, '\n', got) == NULL) {
        ssize_t n = recv(fd, line + got, sizeof line - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0) {
            break;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait_for(fd, POLLIN, deadline)) return busy(wait_s);
        } else if (errno != EINTR) {
            break;
        }
    }
    close(fd);
    line[got] = '\0';
    char *end = strpbrk(line, "\r\n");
    if (end == NULL) {
        if (got == 0) {
            printf("unhealthy: /ready closed the connection without an answer\n");
            return 1;
        }
    } else {
        *end = '\0';
    }
    const char *space = strchr(line, ' ');
    if (strncmp(line, "HTTP/1.", 7) == 0 && space != NULL && strncmp(space, " 200", 4) == 0 &&
        (space[4] == ' ' || space[4] == '\0')) {
        return 0;
    }
    printf("unhealthy: /ready answered %.200s\n", line);
    return 1;
}
