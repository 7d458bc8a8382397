// Package redisurl turns the one Redis URL every proxyq component is configured with
// (REDIS_URL) into asynq's connection option, so that the worker, the producers (enqueue,
// serve), status, the dashboard and dev all reach the same Redis the same way: a single server,
// a Sentinel-managed master, or a Redis Cluster.
//
// Forms (docs/operations.md, "Redis Cluster and Sentinel", is the user-facing copy):
//
//	redis://[[USER]:PASSWORD@]HOST[:6379][/DB][?dial_timeout=5s&read_timeout=3s&write_timeout=3s&pool_size=N]
//	rediss://…                                     the same over TLS
//	redis-socket://[[USER]:PASSWORD@]/path/to/redis.sock[?db=N]
//	redis-sentinel://[[SENTINEL_USER]:SENTINEL_PASSWORD@]HOST:26379[,HOST:26379…][/DB]?master=NAME
//	                 [&password=MASTER_PASSWORD][&username=MASTER_USER][&dial_timeout=…]…
//	redis-cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…][?max_redirects=N&dial_timeout=…]…
//	rediss-cluster://…                             the same over TLS
//
// The sentinel form follows go-redis's convention: the credentials in the URL's user part are
// the sentinels' own (requirepass on the sentinel), the master's (and its replicas') password
// goes in the password parameter, and the path is the database number of the master. The
// cluster form lists one or more seed nodes (the client discovers the rest); a cluster has only
// database 0.
//
// Parse never puts a password in an error; Redact hides every password of a URL for messages.
package redisurl
