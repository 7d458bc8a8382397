package redisurl

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// Example is a URL of each form, for error messages and usage text.
const Example = "redis://host:6379/0, rediss://…, redis-sentinel://host1:26379,host2:26379/0?master=mymaster, or redis-cluster://host1:7000,host2:7001"

// Parse returns the asynq connection option a Redis URL names: asynq.RedisClientOpt for
// redis://, rediss:// and redis-socket://, asynq.RedisFailoverClientOpt for redis-sentinel://
// and asynq.RedisClusterClientOpt for redis-cluster:// and rediss-cluster://. The error names
// the problem and shows the URL with its passwords hidden.
func Parse(raw string) (asynq.RedisConnOpt, error) {
	opt, err := parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, &Error{URL: Redact(raw), Err: err}
	}
	return opt, nil
}

// Error is Parse's error: the URL with its passwords hidden, and what is wrong with it.
type Error struct {
	URL string
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("redis URL %q: %v", e.URL, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// IsCluster reports whether opt is a Redis Cluster option.
func IsCluster(opt asynq.RedisConnOpt) bool {
	switch opt.(type) {
	case asynq.RedisClusterClientOpt, *asynq.RedisClusterClientOpt:
		return true
	}
	return false
}

func parse(raw string) (asynq.RedisConnOpt, error) {
	if raw == "" {
		return nil, errors.New("empty")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("no scheme: want " + Example)
	}
	// net/url rejects a host list ("h1:1,h2:2" has a colon in the "port"), so the sentinel and
	// cluster forms take their hosts out before parsing the rest as one URL.
	var hosts []string
	switch scheme {
	case "redis-sentinel", "redis-cluster", "rediss-cluster":
		var err error
		if hosts, rest, err = cutHosts(rest); err != nil {
			return nil, err
		}
	case "redis", "rediss", "redis-socket":
	default:
		return nil, fmt.Errorf("unsupported scheme %q: want %s", scheme, Example)
	}
	u, err := url.Parse(scheme + "://" + rest)
	if err != nil {
		return nil, errors.New("malformed URL (a password with special characters must be percent-encoded)")
	}
	q := &query{v: u.Query()}
	user, pass := "", ""
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	timeouts := func() (dial, read, write time.Duration) {
		return q.duration("dial_timeout"), q.duration("read_timeout"), q.duration("write_timeout")
	}

	switch scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return nil, errors.New("no host: want e.g. redis://host:6379/0")
		}
		db, err := pathDB(u.Path)
		if err != nil {
			return nil, err
		}
		opt := asynq.RedisClientOpt{Addr: withPort(u.Host, "6379"), Username: user, Password: pass, DB: db, PoolSize: q.integer("pool_size")}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeouts()
		if scheme == "rediss" {
			opt.TLSConfig = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		}
		return opt, q.done()

	case "redis-socket":
		if u.Path == "" {
			return nil, errors.New("no socket path: want e.g. redis-socket:///run/redis/redis.sock?db=0")
		}
		opt := asynq.RedisClientOpt{Network: "unix", Addr: u.Path, Username: user, Password: pass, DB: q.integer("db"), PoolSize: q.integer("pool_size")}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeouts()
		return opt, q.done()

	case "redis-sentinel":
		db, err := pathDB(u.Path)
		if err != nil {
			return nil, err
		}
		if s := q.str("db"); s != "" {
			if db, err = dbNumber(s); err != nil {
				return nil, err
			}
		}
		master := q.str("master")
		if m := q.str("master_name"); master == "" {
			master = m
		}
		if master == "" {
			return nil, errors.New("no master name: add ?master=NAME (the name the sentinels monitor)")
		}
		opt := asynq.RedisFailoverClientOpt{
			MasterName: master, SentinelAddrs: withPorts(hosts, "26379"),
			SentinelUsername: user, SentinelPassword: pass,
			Username: q.str("username"), Password: q.str("password"), DB: db, PoolSize: q.integer("pool_size"),
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeouts()
		return opt, q.done()

	default: // redis-cluster, rediss-cluster
		if db, err := pathDB(u.Path); err != nil {
			return nil, err
		} else if db != 0 {
			return nil, fmt.Errorf("database %d: a Redis Cluster has only database 0", db)
		}
		opt := asynq.RedisClusterClientOpt{Addrs: withPorts(hosts, "6379"), Username: user, Password: pass,
			MaxRedirects: q.integer("max_redirects")}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeouts()
		if scheme == "rediss-cluster" {
			// No ServerName: each node is dialled by its own address, which crypto/tls then
			// verifies the certificate against.
			opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return opt, q.done()
	}
}

// cutHosts splits "[userinfo@]h1:p1,h2:p2[/path][?query]" into the host list and a rest that
// keeps the userinfo, a placeholder host, the path and the query.
func cutHosts(rest string) (hosts []string, remainder string, err error) {
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo := ""
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, authority = authority[:at+1], authority[at+1:]
	}
	for _, h := range strings.Split(authority, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(withPort(h, "1")); err != nil {
			return nil, "", fmt.Errorf("bad host %q: want host:port", h)
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, "", errors.New("no host: list one or more host:port, separated by commas")
	}
	return hosts, userinfo + "placeholder" + tail, nil
}

func withPort(h, port string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), port)
}

func withPorts(hosts []string, port string) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = withPort(h, port)
	}
	return out
}

func pathDB(p string) (int, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return 0, nil
	}
	return dbNumber(p)
}

func dbNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("database %q: want a number, 0 or more", s)
	}
	return n, nil
}

// query reads URL parameters, remembering the first bad one and which were read, so that an
// unknown parameter (a typo) is an error rather than silently ignored.
type query struct {
	v    url.Values
	used map[string]bool
	err  error
}

func (q *query) str(name string) string {
	if q.used == nil {
		q.used = map[string]bool{}
	}
	q.used[name] = true
	return q.v.Get(name)
}

func (q *query) integer(name string) int {
	s := q.str(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if (err != nil || n < 0) && q.err == nil {
		q.err = fmt.Errorf("%s=%q: want a whole number, 0 or more", name, s)
	}
	return n
}

func (q *query) duration(name string) time.Duration {
	s := q.str(name)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if n, nerr := strconv.Atoi(s); nerr == nil {
			d, err = time.Duration(n)*time.Second, nil // a plain number is seconds, as in go-redis
		}
	}
	if (err != nil || d < 0) && q.err == nil {
		q.err = fmt.Errorf("%s=%q: want a duration such as 5s or 500ms", name, s)
	}
	return d
}

func (q *query) done() error {
	if q.err != nil {
		return q.err
	}
	var unknown []string
	for name := range q.v {
		if !q.used[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		known := make([]string, 0, len(q.used))
		for name := range q.used {
			known = append(known, name)
		}
		sort.Strings(known)
		return fmt.Errorf("unknown parameter %s (this form takes %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return nil
}

// Redact returns the URL with every password hidden: the user part's and a password (or
// sentinel_password) parameter's.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		authority = "***@" + authority[at+1:]
	}
	if qi := strings.Index(tail, "?"); qi >= 0 {
		params := strings.Split(tail[qi+1:], "&")
		for i, p := range params {
			name, _, _ := strings.Cut(p, "=")
			if strings.Contains(strings.ToLower(name), "password") {
				params[i] = name + "=***"
			}
		}
		tail = tail[:qi+1] + strings.Join(params, "&")
	}
	return scheme + "://" + authority + tail
}
