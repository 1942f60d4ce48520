/* sock: see sock.h. All I/O is non-blocking with poll() deadlines. */
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int resolve(const char *host, const char *port, int passive, struct addrinfo **res)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = passive ? AI_PASSIVE : 0};
	int ret = getaddrinfo(host, port, &hints, res);
	if (ret)
		return ret == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	return 0;
}

int sock_listen(const char *host, const char *port)
{
	struct addrinfo *res;
	int ret = resolve(host, port, 1, &res), fd = -1, one = 1;
	if (ret)
		return ret;
	ret = -EADDRNOTAVAIL;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) {
			ret = fd;
			break;
		}
		ret = -errno;
		close(fd);
	}
	freeaddrinfo(res);
	return ret;
}

static int wait_fd(int fd, short ev, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = ev};
		int n = poll(&p, 1, (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

void sock_keepalive(int fd)
{
	int one = 1, idle = SOCK_KEEPIDLE_S, intvl = SOCK_KEEPINTVL_S, cnt = SOCK_KEEPCNT;
	unsigned user = SOCK_USER_TIMEOUT_MS;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user, sizeof(user));
}

int sock_connect(const char *host, const char *port, int timeout_ms)
{
	struct addrinfo *res;
	int64_t deadline = now_ms() + timeout_ms;
	int ret = resolve(host, port, 0, &res), one = 1;
	if (ret)
		return ret;
	ret = -ECONNREFUSED;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		sock_keepalive(fd);
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
			ret = fd;
			break;
		}
		if (errno == EINPROGRESS) {
			int err = 0;
			socklen_t el = sizeof(err);
			ret = wait_fd(fd, POLLOUT, deadline);
			if (ret == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
			    !err) {
				ret = fd;
				break;
			}
			if (ret == 0)
				ret = -err;
		} else {
			ret = -errno;
		}
		close(fd);
	}
	freeaddrinfo(res);
	return ret;
}

static int io_full(int fd, void *buf, size_t len, int writing, int64_t deadline)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT)
				    : recv(fd, p, len, MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int ret = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline);
		if (ret)
			return ret;
	}
	return 0;
}

int sock_send_frame(int fd, uint16_t type, const void *body, int timeout_ms)
{
	uint8_t buf[WIRE_FRAME_MAX + WIRE_FRAME_HDR];
	int n = wire_frame_encode(buf, sizeof(buf), type, body);
	if (n < 0)
		return n;
	return io_full(fd, buf, (size_t)n, 1, now_ms() + timeout_ms);
}

int sock_recv_frame(int fd, uint16_t expect, void *out, uint32_t max, int timeout_ms, char *errtext,
		    size_t errlen)
{
	uint8_t hdr[WIRE_FRAME_HDR], body[WIRE_FRAME_MAX];
	int64_t deadline = now_ms() + timeout_ms;
	uint16_t type;
	uint32_t len;
	const char *why;
	if (max > WIRE_FRAME_MAX)
		max = WIRE_FRAME_MAX;
	int ret = io_full(fd, hdr, sizeof(hdr), 0, deadline);
	if (ret)
		return ret;
	if (wire_frame_header(hdr, &type, &len, max))
		return -EPROTO;
	ret = io_full(fd, body, len, 0, deadline);
	if (ret)
		return ret;
	if (type == WF_ERROR && expect != WF_ERROR) {
		struct wire_error e;
		if (wire_frame_decode(WF_ERROR, body, len, &e, &why))
			return -EPROTO;
		if (errtext)
			snprintf(errtext, errlen, "%s", e.text);
		return e.err < 0 && e.err > -4096 ? e.err : -EPROTO;
	}
	if (type != expect)
		return -EPROTO;
	return wire_frame_decode(type, body, len, out, &why);
}

int sock_send_body(int fd, uint16_t type, void *buf, uint32_t len, int timeout_ms)
{
	wire_frame_wrap(buf, type, len);
	return io_full(fd, buf, (size_t)len + WIRE_FRAME_HDR, 1, now_ms() + timeout_ms);
}

int sock_recv_body(int fd, uint16_t *type, void *buf, uint32_t max, uint32_t *len, int timeout_ms)
{
	uint8_t hdr[WIRE_FRAME_HDR];
	int64_t deadline = now_ms() + timeout_ms;
	int ret = io_full(fd, hdr, sizeof(hdr), 0, deadline);
	if (ret)
		return ret;
	if (wire_frame_header(hdr, type, len, max))
		return -EPROTO;
	return io_full(fd, buf, *len, 0, deadline);
}

int sock_local_ip(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	if (getnameinfo((struct sockaddr *)&ss, sl, buf, (socklen_t)len, NULL, 0, NI_NUMERICHOST))
		return -EINVAL;
	return 0;
}

int sock_host_is_local(const char *host)
{
	struct addrinfo *res;
	struct ifaddrs *ifs;
	int local = 0;
	if (resolve(host, NULL, 0, &res))
		return 0;
	if (getifaddrs(&ifs) == 0) {
		for (struct addrinfo *a = res; a && !local; a = a->ai_next) {
			if (a->ai_family == AF_INET &&
			    (ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr) >> 24) ==
				127)
				local = 1;
			for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next) {
				if (!i->ifa_addr || i->ifa_addr->sa_family != a->ai_family)
					continue;
				if (a->ai_family == AF_INET)
					local =
					    ((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr ==
					    ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
				else if (a->ai_family == AF_INET6)
					local = !memcmp(
					    &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr,
					    &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
			}
		}
		freeifaddrs(ifs);
	}
	freeaddrinfo(res);
	return local;
}
