/*
 * ambit_native: the few Linux socket primitives Node.js lacks.
 *
 *   - sockets created inside another network namespace (setns -> socket ->
 *     setns back), returned as raw fds for server.listen({fd}) and
 *     new net.Socket({fd})
 *   - SO_MARK, IP_TRANSPARENT, IP_FREEBIND, SO_REUSEPORT
 *   - SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST
 *   - AF_UNIX SOCK_SEQPACKET with SCM_RIGHTS (ZDS protocol)
 *   - a libuv poll watcher so JS can be told when an fd is readable
 *
 * Every exported function is synchronous and runs on the JS thread. No
 * JavaScript ever runs while the thread is switched to another netns: all
 * arguments are read before setns and the thread is switched back before
 * returning (a failure to switch back aborts the process, because
 * continuing in the wrong namespace would be a silent security bug).
 *
 * Plain C against Node-API (NAPI_VERSION 8) plus libuv's stable uv_poll API.
 */
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IP_FREEBIND
#define IP_FREEBIND 15
#endif

#define MAX_RECV_FDS 16

/* ------------------------------------------------------------------ */
/* error helpers                                                        */
/* ------------------------------------------------------------------ */

static const char *errno_name(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "UNKNOWN";
}

/*
 * Throw an Error shaped like Node's own system errors:
 *   message: "<fn> <syscall> <CODE>: <strerror> (<detail>)"
 *   code:    errno name, e.g. 'EADDRINUSE'
 *   errno:   negative errno (Node convention, e.g. -98)
 *   syscall: the failing syscall
 */
static void throw_errno(napi_env env, int e, const char *fn, const char *syscall,
                        const char *detail_fmt, ...) {
  char detail[256] = "";
  if (detail_fmt) {
    va_list ap;
    va_start(ap, detail_fmt);
    vsnprintf(detail, sizeof detail, detail_fmt, ap);
    va_end(ap);
  }
  char msg[512];
  if (detail[0])
    snprintf(msg, sizeof msg, "%s %s %s: %s (%s)", fn, syscall, errno_name(e), strerror(e), detail);
  else
    snprintf(msg, sizeof msg, "%s %s %s: %s", fn, syscall, errno_name(e), strerror(e));

  napi_value code, message, err, v;
  napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &err);
  napi_create_int32(env, -e, &v);
  napi_set_named_property(env, err, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "syscall", v);
  napi_throw(env, err);
}

static void throw_type(napi_env env, const char *fn, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", fn, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
}

/* ------------------------------------------------------------------ */
/* argument helpers (each returns false with a pending exception)       */
/* ------------------------------------------------------------------ */

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv,
                     size_t *argc_out) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  for (size_t i = argc; i < want; i++) napi_get_undefined(env, &argv[i]);
  if (argc_out) *argc_out = argc;
  return true;
}

static bool is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_undefined || t == napi_null;
}

/* integer in [min, max] */
static bool val_int(napi_env env, napi_value v, const char *fn, const char *name, double min,
                    double max, int64_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  double d;
  if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || d != (double)(int64_t)d ||
      d < min || d > max) {
    char what[160];
    snprintf(what, sizeof what, "%s must be an integer in [%.0f, %.0f]", name, min, max);
    throw_type(env, fn, what);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool opt_int(napi_env env, napi_value obj, const char *fn, const char *name, double min,
                    double max, bool *present, int64_t *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return false;
  *present = !is_nullish(env, v);
  if (!*present) return true;
  return val_int(env, v, fn, name, min, max, out);
}

static bool opt_bool(napi_env env, napi_value obj, const char *fn, const char *name, bool dflt,
                     bool *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return false;
  if (is_nullish(env, v)) {
    *out = dflt;
    return true;
  }
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_boolean) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a boolean", name);
    throw_type(env, fn, what);
    return false;
  }
  napi_get_value_bool(env, v, out);
  return true;
}

static bool val_str(napi_env env, napi_value v, const char *fn, const char *name, char *buf,
                    size_t size) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  size_t len = 0;
  if (t != napi_string) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a string", name);
    throw_type(env, fn, what);
    return false;
  }
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  if (len + 1 > size) {
    char what[128];
    snprintf(what, sizeof what, "%s is too long (max %zu bytes)", name, size - 1);
    throw_type(env, fn, what);
    return false;
  }
  napi_get_value_string_utf8(env, v, buf, size, &len);
  return true;
}

/* optional string property; present=false if undefined/null */
static bool opt_str(napi_env env, napi_value obj, const char *fn, const char *name, char *buf,
                    size_t size, bool *present) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return false;
  *present = !is_nullish(env, v);
  if (!*present) return true;
  return val_str(env, v, fn, name, buf, size);
}

static bool arg_object(napi_env env, napi_value v, const char *fn) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_object) {
    throw_type(env, fn, "options must be an object");
    return false;
  }
  return true;
}

static bool arg_fd(napi_env env, napi_value v, const char *fn, int *fd) {
  int64_t x;
  if (!val_int(env, v, fn, "fd", 0, 2147483647.0, &x)) return false;
  *fd = (int)x;
  return true;
}

/* ------------------------------------------------------------------ */
/* address helpers                                                      */
/* ------------------------------------------------------------------ */

/* Numeric host (v4 or v6, optional [brackets], optional %scope) -> sockaddr. */
static bool parse_ip(const char *host_in, int port, struct sockaddr_storage *ss, socklen_t *len) {
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 4];
  size_t hl = strlen(host_in);
  if (hl >= sizeof host) return false;
  memcpy(host, host_in, hl + 1);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = 0;
  }
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    return true;
  }
  if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *len = sizeof *s6;
    return true;
  }
  if (strchr(host, '%')) { /* scoped v6, e.g. fe80::1%eth0 */
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_INET6;
    hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(host, NULL, &hints, &res) == 0 && res) {
      memcpy(s6, res->ai_addr, sizeof *s6);
      s6->sin6_port = htons((uint16_t)port);
      *len = sizeof *s6;
      freeaddrinfo(res);
      return true;
    }
    if (res) freeaddrinfo(res);
  }
  return false;
}

/* sockaddr -> { address, port, family }. v4-mapped v6 addresses are unmapped. */
static napi_value sockaddr_to_js(napi_env env, const struct sockaddr *sa) {
  char buf[INET6_ADDRSTRLEN];
  int port, family;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof buf);
    port = ntohs(s4->sin_port);
    family = 4;
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, sizeof buf);
      family = 4;
    } else {
      inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof buf);
      family = 6;
    }
    port = ntohs(s6->sin6_port);
  } else {
    return NULL;
  }
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, "address", v);
  napi_create_int32(env, port, &v);
  napi_set_named_property(env, obj, "port", v);
  napi_create_int32(env, family, &v);
  napi_set_named_property(env, obj, "family", v);
  return obj;
}

static void fmt_sockaddr(const struct sockaddr_storage *ss, char *out, size_t size) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof buf);
    snprintf(out, size, "%s:%d", buf, ntohs(s4->sin_port));
  } else {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof buf);
    snprintf(out, size, "[%s]:%d", buf, ntohs(s6->sin6_port));
  }
}

/* ------------------------------------------------------------------ */
/* network namespace switching                                          */
/* ------------------------------------------------------------------ */

/*
 * This thread's own netns, opened once per thread (each JS thread loads the
 * addon and runs Init on itself): opening /proc/thread-self/ns/net for every
 * socket cost half of the switch (21 -> 11 us per socket).
 */
static __thread int home_netns = -1;

static void close_home_netns(void *arg) {
  (void)arg;
  if (home_netns >= 0) close(home_netns);
  home_netns = -1;
}

/*
 * Create a socket in netns `nsfd` (or the current one if nsfd < 0).
 * The thread is switched back right after socket(): a socket's netns is
 * fixed at creation, and bind/listen/setsockopt act on that netns
 * regardless of the calling thread's netns, so nothing else needs to run
 * inside the target namespace. Returns fd, or -1 with err and syscall set.
 */
static int socket_in_netns(int nsfd, int domain, int type, int *err, const char **syscall) {
  int orig = -1;
  if (nsfd >= 0) {
    if (home_netns < 0) { /* not loaded on this thread: cannot switch back */
      *err = EBADF;
      *syscall = "setns";
      return -1;
    }
    orig = home_netns;
    if (setns(nsfd, CLONE_NEWNET) < 0) {
      *err = errno;
      *syscall = "setns";
      return -1;
    }
  }
  int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int serr = errno;
  if (orig >= 0) {
    if (setns(orig, CLONE_NEWNET) < 0) {
      /* The JS thread would stay in the wrong netns. Never continue. */
      char msg[128];
      snprintf(msg, sizeof msg, "setns back to the original network namespace failed: %s",
               strerror(errno));
      napi_fatal_error("ambit_native", NAPI_AUTO_LENGTH, msg, NAPI_AUTO_LENGTH);
    }
  }
  if (fd < 0) {
    *err = serr;
    *syscall = "socket";
    return -1;
  }
  return fd;
}

static int setint(int fd, int level, int opt, int val) {
  return setsockopt(fd, level, opt, &val, sizeof val);
}

/* ------------------------------------------------------------------ */
/* listenTcp                                                            */
/* ------------------------------------------------------------------ */

static napi_value ListenTcp(napi_env env, napi_callback_info info) {
  const char *fn = "listenTcp";
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, NULL) || !arg_object(env, argv[0], fn)) return NULL;
  napi_value o = argv[0];

  bool has_ns, has_port, has_backlog, has_mark, has_host;
  int64_t nsfd = -1, port = 0, backlog = 511, mark = 0;
  bool transparent, freebind, reuse_port, reuse_addr, no_delay;
  char host[128];
  if (!opt_int(env, o, fn, "netnsFd", 0, 2147483647.0, &has_ns, &nsfd) ||
      !opt_str(env, o, fn, "host", host, sizeof host, &has_host) ||
      !opt_int(env, o, fn, "port", 0, 65535, &has_port, &port) ||
      !opt_int(env, o, fn, "backlog", 0, 2147483647.0, &has_backlog, &backlog) ||
      !opt_int(env, o, fn, "mark", 0, 4294967295.0, &has_mark, &mark) ||
      !opt_bool(env, o, fn, "transparent", false, &transparent) ||
      !opt_bool(env, o, fn, "freebind", false, &freebind) ||
      !opt_bool(env, o, fn, "reusePort", false, &reuse_port) ||
      !opt_bool(env, o, fn, "reuseAddr", true, &reuse_addr) ||
      !opt_bool(env, o, fn, "noDelay", false, &no_delay))
    return NULL;
  if (!has_host) return throw_type(env, fn, "host is required"), NULL;
  if (!has_port) return throw_type(env, fn, "port is required"), NULL;
  if (!has_ns) nsfd = -1;
  if (!has_backlog) backlog = 511;

  struct sockaddr_storage ss;
  socklen_t sslen;
  if (!parse_ip(host, (int)port, &ss, &sslen))
    return throw_type(env, fn, "host must be a numeric IPv4 or IPv6 address"), NULL;
  char where[80];
  fmt_sockaddr(&ss, where, sizeof where);

  int err = 0;
  const char *sc = NULL;
  int fd = socket_in_netns((int)nsfd, ss.ss_family, SOCK_STREAM, &err, &sc);
  if (fd < 0) return throw_errno(env, err, fn, sc, "%s", where), NULL;

  bool v6 = ss.ss_family == AF_INET6;
  if (v6 && IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr) &&
      setint(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0) < 0)
    sc = "setsockopt(IPV6_V6ONLY)";
  else if (reuse_addr && setint(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0)
    sc = "setsockopt(SO_REUSEADDR)";
  else if (reuse_port && setint(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0)
    sc = "setsockopt(SO_REUSEPORT)";
  else if (has_mark && setint(fd, SOL_SOCKET, SO_MARK, (int)(uint32_t)mark) < 0)
    sc = "setsockopt(SO_MARK)";
  else if (transparent && (v6 ? setint(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
                              : setint(fd, IPPROTO_IP, IP_TRANSPARENT, 1)) < 0)
    sc = "setsockopt(IP_TRANSPARENT)";
  else if (freebind && (v6 ? setint(fd, IPPROTO_IPV6, IPV6_FREEBIND, 1)
                           : setint(fd, IPPROTO_IP, IP_FREEBIND, 1)) < 0)
    sc = "setsockopt(IP_FREEBIND)";
  /* Accepted sockets inherit TCP_NODELAY: one setsockopt here instead of one per connection. */
  else if (no_delay && setint(fd, IPPROTO_TCP, TCP_NODELAY, 1) < 0)
    sc = "setsockopt(TCP_NODELAY)";
  else if (bind(fd, (struct sockaddr *)&ss, sslen) < 0)
    sc = "bind";
  else if (listen(fd, (int)backlog) < 0)
    sc = "listen";
  if (sc) {
    err = errno;
    close(fd);
    return throw_errno(env, err, fn, sc, "%s", where), NULL;
  }
  napi_value r;
  napi_create_int32(env, fd, &r);
  return r;
}

/* ------------------------------------------------------------------ */
/* socketTcp                                                            */
/* ------------------------------------------------------------------ */

static napi_value SocketTcp(napi_env env, napi_callback_info info) {
  const char *fn = "socketTcp";
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, NULL) || !arg_object(env, argv[0], fn)) return NULL;
  napi_value o = argv[0];

  bool has_ns, has_family, has_mark, has_baddr, has_bport;
  int64_t nsfd = -1, family = 0, mark = 0, bport = 0;
  bool transparent, freebind, reuse_addr;
  char baddr[128];
  if (!opt_int(env, o, fn, "netnsFd", 0, 2147483647.0, &has_ns, &nsfd) ||
      !opt_int(env, o, fn, "family", 4, 6, &has_family, &family) ||
      !opt_int(env, o, fn, "mark", 0, 4294967295.0, &has_mark, &mark) ||
      !opt_bool(env, o, fn, "transparent", false, &transparent) ||
      !opt_bool(env, o, fn, "freebind", false, &freebind) ||
      !opt_bool(env, o, fn, "reuseAddr", false, &reuse_addr) ||
      !opt_str(env, o, fn, "bindAddress", baddr, sizeof baddr, &has_baddr) ||
      !opt_int(env, o, fn, "bindPort", 0, 65535, &has_bport, &bport))
    return NULL;
  if (!has_family || (family != 4 && family != 6))
    return throw_type(env, fn, "family must be 4 or 6"), NULL;
  if (!has_ns) nsfd = -1;
  int domain = family == 4 ? AF_INET : AF_INET6;

  struct sockaddr_storage ss;
  socklen_t sslen = 0;
  bool do_bind = has_baddr || has_bport;
  char where[80] = "";
  if (do_bind) {
    if (!has_baddr) strcpy(baddr, family == 4 ? "0.0.0.0" : "::");
    if (!parse_ip(baddr, (int)bport, &ss, &sslen))
      return throw_type(env, fn, "bindAddress must be a numeric IP address"), NULL;
    if (ss.ss_family != domain)
      return throw_type(env, fn, "bindAddress family does not match family"), NULL;
    fmt_sockaddr(&ss, where, sizeof where);
  }

  int err = 0;
  const char *sc = NULL;
  int fd = socket_in_netns((int)nsfd, domain, SOCK_STREAM, &err, &sc);
  if (fd < 0) return throw_errno(env, err, fn, sc, NULL), NULL;

  bool v6 = domain == AF_INET6;
  if (has_mark && setint(fd, SOL_SOCKET, SO_MARK, (int)(uint32_t)mark) < 0)
    sc = "setsockopt(SO_MARK)";
  else if (transparent && (v6 ? setint(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
                              : setint(fd, IPPROTO_IP, IP_TRANSPARENT, 1)) < 0)
    sc = "setsockopt(IP_TRANSPARENT)";
  else if (freebind && (v6 ? setint(fd, IPPROTO_IPV6, IPV6_FREEBIND, 1)
                           : setint(fd, IPPROTO_IP, IP_FREEBIND, 1)) < 0)
    sc = "setsockopt(IP_FREEBIND)";
  else if (reuse_addr && setint(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0)
    sc = "setsockopt(SO_REUSEADDR)";
  else if (do_bind && bind(fd, (struct sockaddr *)&ss, sslen) < 0)
    sc = "bind";
  if (sc) {
    err = errno;
    close(fd);
    return throw_errno(env, err, fn, sc, where[0] ? "%s" : NULL, where), NULL;
  }
  napi_value r;
  napi_create_int32(env, fd, &r);
  return r;
}

/* ------------------------------------------------------------------ */
/* originalDst / localAddress / marks                                   */
/* ------------------------------------------------------------------ */

static napi_value OriginalDst(napi_env env, napi_callback_info info) {
  const char *fn = "originalDst";
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, NULL) || !arg_fd(env, argv[0], fn, &fd)) return NULL;

  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &len) < 0)
    return throw_errno(env, errno, fn, "getsockname", "fd %d", fd), NULL;

  struct sockaddr_storage dst;
  memset(&dst, 0, sizeof dst);
  bool v4 = local.ss_family == AF_INET ||
            (local.ss_family == AF_INET6 &&
             IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&local)->sin6_addr));
  if (v4) {
    /* also right for v4-mapped connections on a dual-stack socket: the
       conntrack entry is IPv4 and SOL_IP reaches the IPv4 getorigdst */
    len = sizeof(struct sockaddr_in);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) < 0)
      return throw_errno(env, errno, fn, "getsockopt(SO_ORIGINAL_DST)", "fd %d", fd), NULL;
  } else if (local.ss_family == AF_INET6) {
    len = sizeof(struct sockaddr_in6);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len) < 0)
      return throw_errno(env, errno, fn, "getsockopt(IP6T_SO_ORIGINAL_DST)", "fd %d", fd), NULL;
  } else {
    return throw_errno(env, EAFNOSUPPORT, fn, "getsockname", "fd %d is not an IP socket", fd),
           NULL;
  }
  return sockaddr_to_js(env, (struct sockaddr *)&dst);
}

static napi_value LocalAddress(napi_env env, napi_callback_info info) {
  const char *fn = "localAddress";
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, NULL) || !arg_fd(env, argv[0], fn, &fd)) return NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return throw_errno(env, errno, fn, "getsockname", "fd %d", fd), NULL;
  napi_value r = sockaddr_to_js(env, (struct sockaddr *)&ss);
  if (!r) return throw_errno(env, EAFNOSUPPORT, fn, "getsockname", "fd %d is not an IP socket", fd), NULL;
  return r;
}

static napi_value SetMark(napi_env env, napi_callback_info info) {
  const char *fn = "setMark";
  napi_value argv[2];
  int fd;
  int64_t mark;
  if (!get_args(env, info, 2, argv, NULL) || !arg_fd(env, argv[0], fn, &fd) ||
      !val_int(env, argv[1], fn, "mark", 0, 4294967295.0, &mark))
    return NULL;
  if (setint(fd, SOL_SOCKET, SO_MARK, (int)(uint32_t)mark) < 0)
    return throw_errno(env, errno, fn, "setsockopt(SO_MARK)", "fd %d", fd), NULL;
  return NULL;
}

/* The int value of a socket option of the fd in argument 0; false (with an exception pending) on failure. */
static bool get_sockopt_int(napi_env env, napi_callback_info info, const char *fn, int level, int opt,
                            const char *what, int *value) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, NULL) || !arg_fd(env, argv[0], fn, &fd)) return false;
  socklen_t len = sizeof *value;
  if (getsockopt(fd, level, opt, value, &len) < 0) return throw_errno(env, errno, fn, what, "fd %d", fd), false;
  return true;
}

static napi_value GetMark(napi_env env, napi_callback_info info) {
  int mark = 0;
  if (!get_sockopt_int(env, info, "getMark", SOL_SOCKET, SO_MARK, "getsockopt(SO_MARK)", &mark)) return NULL;
  napi_value r;
  napi_create_uint32(env, (uint32_t)mark, &r);
  return r;
}

static napi_value GetNoDelay(napi_env env, napi_callback_info info) {
  int on = 0;
  if (!get_sockopt_int(env, info, "getNoDelay", IPPROTO_TCP, TCP_NODELAY, "getsockopt(TCP_NODELAY)", &on)) return NULL;
  napi_value r;
  napi_get_boolean(env, on != 0, &r);
  return r;
}

/* ------------------------------------------------------------------ */
/* fds and namespaces                                                   */
/* ------------------------------------------------------------------ */

static napi_value OpenNetns(napi_env env, napi_callback_info info) {
  const char *fn = "openNetns";
  napi_value argv[1];
  char path[4096];
  if (!get_args(env, info, 1, argv, NULL) || !val_str(env, argv[0], fn, "path", path, sizeof path))
    return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, fn, "open", "%s", path), NULL;
  napi_value r;
  napi_create_int32(env, fd, &r);
  return r;
}

static napi_value CloseFd(napi_env env, napi_callback_info info) {
  const char *fn = "closeFd";
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, NULL) || !arg_fd(env, argv[0], fn, &fd)) return NULL;
  /* On Linux the fd is released even when close() fails with EINTR. */
  if (close(fd) < 0 && errno != EINTR) return throw_errno(env, errno, fn, "close", "fd %d", fd), NULL;
  return NULL;
}

/* ------------------------------------------------------------------ */
/* AF_UNIX SOCK_SEQPACKET                                               */
/* ------------------------------------------------------------------ */

/* "@name" selects the abstract namespace. */
static bool unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len) {
  memset(sun, 0, sizeof *sun);
  sun->sun_family = AF_UNIX;
  size_t pl = strlen(path);
  if (pl == 0 || pl >= sizeof sun->sun_path) return false;
  memcpy(sun->sun_path, path, pl);
  if (path[0] == '@') sun->sun_path[0] = 0;
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl + (path[0] == '@' ? 0 : 1));
  return true;
}

static napi_value SeqpacketListen(napi_env env, napi_callback_info info) {
  const char *fn = "seqpacketListen";
  napi_value argv[2];
  char path[256];
  int64_t backlog = 128;
  if (!get_args(env, info, 2, argv, NULL) || !val_str(env, argv[0], fn, "path", path, sizeof path))
    return NULL;
  if (!is_nullish(env, argv[1]) &&
      !val_int(env, argv[1], fn, "backlog", 0, 2147483647.0, &backlog))
    return NULL;
  struct sockaddr_un sun;
  socklen_t len;
  if (!unix_addr(path, &sun, &len))
    return throw_errno(env, ENAMETOOLONG, fn, "bind", "%s", path), NULL;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, fn, "socket", NULL), NULL;
  const char *sc = NULL;
  if (bind(fd, (struct sockaddr *)&sun, len) < 0)
    sc = "bind";
  else if (listen(fd, (int)backlog) < 0)
    sc = "listen";
  if (sc) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, fn, sc, "%s", path), NULL;
  }
  napi_value r;
  napi_create_int32(env, fd, &r);
  return r;
}

static napi_value SeqpacketConnect(napi_env env, napi_callback_info info) {
  const char *fn = "seqpacketConnect";
  napi_value argv[1];
  char path[256];
  if (!get_args(env, info, 1, argv, NULL) || !val_str(env, argv[0], fn, "path", path, sizeof path))
    return NULL;
  struct sockaddr_un sun;
  socklen_t len;
  if (!unix_addr(path, &sun, &len))
    return throw_errno(env, ENAMETOOLONG, fn, "connect", "%s", path), NULL;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, fn, "socket", NULL), NULL;
  int rc;
  do rc = connect(fd, (struct sockaddr *)&sun, len);
  while (rc < 0 && errno == EINTR);
  /* AF_UNIX connect completes synchronously; a non-blocking connect only
     fails with EAGAIN when the listener's backlog is full. */
  if (rc < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, fn, "connect", "%s", path), NULL;
  }
  napi_value r;
  napi_create_int32(env, fd, &r);
  return r;
}

static napi_value SeqpacketAccept(napi_env env, napi_callback_info info) {
  const char *fn = "seqpacketAccept";
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, NULL) || !arg_fd(env, argv[0], fn, &fd)) return NULL;
  int c;
  do c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (c < 0 && errno == EINTR);
  if (c < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) c = -1;
    else return throw_errno(env, errno, fn, "accept4", "fd %d", fd), NULL;
  }
  napi_value r;
  napi_create_int32(env, c, &r);
  return r;
}

static napi_value SeqpacketSend(napi_env env, napi_callback_info info) {
  const char *fn = "seqpacketSend";
  napi_value argv[3];
  int fd;
  if (!get_args(env, info, 3, argv, NULL) || !arg_fd(env, argv[0], fn, &fd)) return NULL;

  void *data = NULL;
  size_t dlen = 0;
  bool is_ta = false;
  napi_is_typedarray(env, argv[1], &is_ta);
  if (is_ta) {
    napi_typedarray_type tt;
    size_t n;
    napi_value ab;
    size_t off;
    napi_get_typedarray_info(env, argv[1], &tt, &n, &data, &ab, &off);
    if (tt != napi_uint8_array && tt != napi_int8_array && tt != napi_uint8_clamped_array)
      return throw_type(env, fn, "data must be a Uint8Array or Buffer"), NULL;
    dlen = n;
  } else {
    return throw_type(env, fn, "data must be a Uint8Array or Buffer"), NULL;
  }
  int pass_fd = -1;
  if (!is_nullish(env, argv[2])) {
    int64_t x;
    if (!val_int(env, argv[2], fn, "passFd", 0, 2147483647.0, &x)) return NULL;
    pass_fd = (int)x;
  }

  struct iovec iov = {.iov_base = data ? data : (void *)"", .iov_len = dlen};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  if (pass_fd >= 0) {
    memset(&u, 0, sizeof u);
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, fn, "sendmsg", "fd %d", fd), NULL;
  if ((size_t)n != dlen) return throw_errno(env, EMSGSIZE, fn, "sendmsg", "short send"), NULL;
  return NULL;
}

static napi_value SeqpacketRecv(napi_env env, napi_callback_info info) {
  const char *fn = "seqpacketRecv";
  napi_value argv[2];
  int fd;
  int64_t max_len = 65536;
  if (!get_args(env, info, 2, argv, NULL) || !arg_fd(env, argv[0], fn, &fd)) return NULL;
  if (!is_nullish(env, argv[1]) && !val_int(env, argv[1], fn, "maxLen", 1, 16777216.0, &max_len))
    return NULL;

  char *buf = malloc((size_t)max_len);
  if (!buf) return throw_errno(env, ENOMEM, fn, "malloc", NULL), NULL;
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_RECV_FDS)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {.iov_base = buf, .iov_len = (size_t)max_len};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof u.buf;
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    free(buf);
    if (e == EAGAIN || e == EWOULDBLOCK) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    return throw_errno(env, e, fn, "recvmsg", "fd %d", fd), NULL;
  }

  /* collect passed fds; keep the first, close any extras so nothing leaks */
  int got = -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < nfds; i++) {
      int f;
      memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (got < 0) got = f;
      else close(f);
    }
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    if (got >= 0) close(got);
    free(buf);
    if (msg.msg_flags & MSG_TRUNC)
      throw_errno(env, EMSGSIZE, fn, "recvmsg", "message longer than maxLen %lld, discarded",
                  (long long)max_len);
    else
      throw_errno(env, EMSGSIZE, fn, "recvmsg", "control data truncated (too many fds)");
    return NULL;
  }

  napi_value obj, data, v;
  napi_create_object(env, &obj);
  void *unused;
  if (napi_create_buffer_copy(env, (size_t)n, buf, &unused, &data) != napi_ok) {
    free(buf);
    if (got >= 0) close(got);
    return NULL;
  }
  free(buf);
  napi_set_named_property(env, obj, "data", data);
  if (got >= 0) {
    napi_create_int32(env, got, &v);
    napi_set_named_property(env, obj, "fd", v);
  } else if (n == 0) {
    napi_get_boolean(env, true, &v);
    napi_set_named_property(env, obj, "eof", v);
  }
  return obj;
}

/* ------------------------------------------------------------------ */
/* fd readiness watcher (uv_poll on the main loop)                      */
/* ------------------------------------------------------------------ */

typedef struct watch_s {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_async_context actx;
  int owners;  /* the JS external + the live uv handle */
  bool closing;
  bool hook;   /* env cleanup hook registered */
} watch_t;

static void watch_release(watch_t *w) {
  if (--w->owners == 0) free(w);
}

static void watch_on_close(uv_handle_t *h) { watch_release((watch_t *)h->data); }

static void watch_env_cleanup(void *arg);

/* Stop polling and release JS resources. Safe to call more than once. */
static void watch_stop(watch_t *w, bool from_cleanup) {
  if (w->closing) return;
  w->closing = true;
  uv_poll_stop(&w->poll);
  if (!from_cleanup) {
    if (w->cb) napi_delete_reference(w->env, w->cb);
    if (w->actx) napi_async_destroy(w->env, w->actx);
    if (w->hook) napi_remove_env_cleanup_hook(w->env, watch_env_cleanup, w);
  }
  w->cb = NULL;
  w->actx = NULL;
  w->hook = false;
  uv_close((uv_handle_t *)&w->poll, watch_on_close);
}

static void watch_env_cleanup(void *arg) { watch_stop((watch_t *)arg, true); }

static void watch_on_poll(uv_poll_t *h, int status, int events) {
  watch_t *w = (watch_t *)h->data;
  if (w->closing || !w->cb) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[2], result;
  napi_get_reference_value(env, w->cb, &cb);
  napi_get_global(env, &recv); /* napi_make_callback needs an object receiver */
  napi_create_int32(env, status, &argv[0]);
  napi_create_int32(env, events, &argv[1]);
  /* napi_make_callback runs the microtask queue afterwards, like any
     other Node I/O callback */
  if (napi_make_callback(env, w->actx, recv, cb, 2, argv, &result) == napi_pending_exception) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    napi_fatal_exception(env, exc); /* -> process 'uncaughtException' */
  }
  napi_close_handle_scope(env, scope);
}

static void watch_finalize(napi_env env, void *data, void *hint) {
  /* The JS object holding the watcher was collected: stop it if still active. */
  watch_t *w = (watch_t *)data;
  watch_stop(w, false);
  watch_release(w);
}

static napi_value WatchFd(napi_env env, napi_callback_info info) {
  const char *fn = "watchFd";
  napi_value argv[3];
  int fd;
  int64_t events;
  if (!get_args(env, info, 3, argv, NULL) || !arg_fd(env, argv[0], fn, &fd) ||
      !val_int(env, argv[1], fn, "events", 1, 3, &events))
    return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t != napi_function) return throw_type(env, fn, "callback must be a function"), NULL;

  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  watch_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, ENOMEM, fn, "calloc", NULL), NULL;
  w->env = env;
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc < 0) {
    free(w);
    return throw_errno(env, -rc, fn, "uv_poll_init", "fd %d", fd), NULL;
  }
  w->poll.data = w;
  w->owners = 2;
  napi_value name;
  napi_create_string_utf8(env, "ambit.watchFd", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[2], 1, &w->cb);
  napi_async_init(env, NULL, name, &w->actx);
  napi_add_env_cleanup_hook(env, watch_env_cleanup, w);
  w->hook = true;
  rc = uv_poll_start(&w->poll, (int)events, watch_on_poll);
  napi_value ext;
  if (napi_create_external(env, w, watch_finalize, NULL, &ext) != napi_ok) {
    watch_stop(w, false);
    watch_release(w);
    return NULL;
  }
  if (rc < 0) {
    watch_stop(w, false);
    return throw_errno(env, -rc, fn, "uv_poll_start", "fd %d", fd), NULL;
  }
  return ext;
}

static watch_t *arg_watch(napi_env env, napi_value v, const char *fn) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  void *p = NULL;
  if (t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) {
    throw_type(env, fn, "handle must be a watcher returned by watchFd");
    return NULL;
  }
  return (watch_t *)p;
}

static napi_value UnwatchFd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  watch_t *w = arg_watch(env, argv[0], "unwatchFd");
  if (w) watch_stop(w, false);
  return NULL;
}

static napi_value RefWatch(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  watch_t *w = arg_watch(env, argv[0], "refWatch");
  if (!w) return NULL;
  bool ref = true;
  napi_get_value_bool(env, argv[1], &ref);
  if (!w->closing) {
    if (ref) uv_ref((uv_handle_t *)&w->poll);
    else uv_unref((uv_handle_t *)&w->poll);
  }
  return NULL;
}

/* ------------------------------------------------------------------ */

#define EXPORT(name, f)                                                          \
  do {                                                                           \
    napi_value fnv;                                                              \
    napi_create_function(env, name, NAPI_AUTO_LENGTH, f, NULL, &fnv);            \
    napi_set_named_property(env, exports, name, fnv);                            \
  } while (0)

static napi_value Init(napi_env env, napi_value exports) {
  if (home_netns < 0) {
    home_netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_netns < 0) {
      throw_errno(env, errno, "load", "open(/proc/thread-self/ns/net)", NULL);
      return NULL;
    }
    napi_add_env_cleanup_hook(env, close_home_netns, NULL);
  }
  EXPORT("listenTcp", ListenTcp);
  EXPORT("socketTcp", SocketTcp);
  EXPORT("originalDst", OriginalDst);
  EXPORT("localAddress", LocalAddress);
  EXPORT("setMark", SetMark);
  EXPORT("getMark", GetMark);
  EXPORT("getNoDelay", GetNoDelay);
  EXPORT("openNetns", OpenNetns);
  EXPORT("closeFd", CloseFd);
  EXPORT("seqpacketListen", SeqpacketListen);
  EXPORT("seqpacketConnect", SeqpacketConnect);
  EXPORT("seqpacketAccept", SeqpacketAccept);
  EXPORT("seqpacketSend", SeqpacketSend);
  EXPORT("seqpacketRecv", SeqpacketRecv);
  EXPORT("watchFd", WatchFd);
  EXPORT("unwatchFd", UnwatchFd);
  EXPORT("refWatch", RefWatch);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
