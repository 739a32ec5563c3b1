/* Event subscribers for the watch benchmark that cost almost nothing while it measures.

   _reader HOST PORT TOKEN COUNT OUTDIR MAX_SECONDS

   Opens COUNT connections to HOST:PORT, asks each for GET /v1/events (admin token:
   every event), and copies every byte each one receives, HTTP head and chunked body
   as they came, to OUTDIR/<i> (a tmpfs folder). Prints READY once every response head
   is in, then reads until its stdin closes (or MAX_SECONDS pass), prints DONE <bytes>
   and exits. It parses nothing: the benchmark checks the files after the measured run
   (bench._readers.verify: framing undone, every event counted, revisions in order and
   without a gap), so that checking costs nothing on the load generator's CPU while
   wrk runs. One epoll loop, woken at most every 5 ms (the server flushes every 25 ms):
   a burst of sends is read in one or two wake-ups. Built by the benchmark with the
   system's cc. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF (1 << 18)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT TOKEN COUNT OUTDIR MAX_SECONDS\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *token = argv[3], *outdir = argv[5];
    int port = atoi(argv[2]), count = atoi(argv[4]);
    double deadline = now() + atof(argv[6]);
    if (count < 1 || count > 1000) {
        fprintf(stderr, "COUNT must be 1..1000\n");
        return 2;
    }
    int *socks = calloc(count, sizeof(int)), *files = calloc(count, sizeof(int));
    int *matched = calloc(count, sizeof(int)); /* of "\r\n\r\n": 4 = head in */
    static char buf[BUF];
    char request[1024];
    int len = snprintf(request, sizeof request,
                       "GET /v1/events HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                       "Accept: text/event-stream\r\n\r\n",
                       host, port, token);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("inet_pton");
    int poll = epoll_create1(0);
    if (poll < 0) die("epoll_create1");
    for (int i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%d", outdir, i);
        files[i] = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (files[i] < 0) die("open");
        socks[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (socks[i] < 0) die("socket");
        if (connect(socks[i], (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        if (write(socks[i], request, len) != len) die("write request");
        fcntl(socks[i], F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        if (epoll_ctl(poll, EPOLL_CTL_ADD, socks[i], &ev) < 0) die("epoll_ctl");
    }
    struct epoll_event in = {.events = EPOLLIN | EPOLLHUP, .data.u32 = (unsigned)count};
    if (epoll_ctl(poll, EPOLL_CTL_ADD, 0, &in) < 0) die("epoll_ctl stdin");
    int heads = 0, ready = 0, open_socks = count;
    long long total = 0;
    struct epoll_event events[1024];
    struct timespec pause = {0, 5000000};
    while (now() < deadline && open_socks > 0) {
        int n = epoll_wait(poll, events, 1024, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        int stop = 0;
        for (int k = 0; k < n; k++) {
            unsigned i = events[k].data.u32;
            if (i == (unsigned)count) {
                stop = 1;
                continue;
            }
            ssize_t got = recv(socks[i], buf, BUF, 0);
            if (got < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                die("recv");
            }
            if (got == 0) { /* the server closed it: the check will say so */
                epoll_ctl(poll, EPOLL_CTL_DEL, socks[i], NULL);
                open_socks--;
                continue;
            }
            total += got;
            for (ssize_t off = 0; off < got;) {
                ssize_t w = write(files[i], buf + off, got - off);
                if (w < 0) die("write file");
                off += w;
            }
            for (ssize_t j = 0; matched[i] < 4 && j < got; j++) {
                char want = "\r\n\r\n"[matched[i]];
                matched[i] = buf[j] == want ? matched[i] + 1 : (buf[j] == '\r' ? 1 : 0);
                if (matched[i] == 4) heads++;
            }
        }
        if (!ready && heads == count) {
            printf("READY\n");
            fflush(stdout);
            ready = 1;
        }
        if (stop) break;
        nanosleep(&pause, NULL); /* the kernel's socket buffers hold what comes meanwhile */
    }
    printf("DONE %lld\n", total);
    fflush(stdout);
    for (int i = 0; i < count; i++) close(files[i]);
    return 0;
}
