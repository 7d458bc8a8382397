package redisurl

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestParseForms(t *testing.T) {
	cases := []struct {
		url  string
		want asynq.RedisConnOpt
	}{
		{"redis://127.0.0.1:6379/3", asynq.RedisClientOpt{Addr: "127.0.0.1:6379", DB: 3}},
		{"redis://cache", asynq.RedisClientOpt{Addr: "cache:6379"}},
		{"redis://app:s3cret@h:1/0?dial_timeout=2s&read_timeout=3&pool_size=9",
			asynq.RedisClientOpt{Addr: "h:1", Username: "app", Password: "s3cret", DialTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second, PoolSize: 9}},
		{"redis-socket://:pw@/run/redis.sock?db=2", asynq.RedisClientOpt{Network: "unix", Addr: "/run/redis.sock", Password: "pw", DB: 2}},
		{"redis-sentinel://:spw@s1:26379,s2,s3:26380/4?master=mymaster&password=mpw&username=app",
			asynq.RedisFailoverClientOpt{MasterName: "mymaster", SentinelAddrs: []string{"s1:26379", "s2:26379", "s3:26380"},
				SentinelPassword: "spw", Username: "app", Password: "mpw", DB: 4}},
		{"redis-sentinel://s1:26379?master_name=m&db=5", asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"s1:26379"}, DB: 5}},
		{"redis-cluster://:pw@10.0.0.1:7000,10.0.0.2:7001?max_redirects=5&write_timeout=1s",
			asynq.RedisClusterClientOpt{Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7001"}, Password: "pw", MaxRedirects: 5, WriteTimeout: time.Second}},
		{"redis-cluster://[::1]:7000,node/0", asynq.RedisClusterClientOpt{Addrs: []string{"[::1]:7000", "node:6379"}}},
	}
	for _, c := range cases {
		got, err := Parse(c.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.url, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q)\n got  %#v\n want %#v", c.url, got, c.want)
		}
	}
	tlsOpt, err := Parse("rediss-cluster://a:1,b:2")
	if err != nil || tlsOpt.(asynq.RedisClusterClientOpt).TLSConfig == nil || !IsCluster(tlsOpt) {
		t.Errorf("rediss-cluster: %#v %v", tlsOpt, err)
	}
	if o, _ := Parse("rediss://h:1"); o.(asynq.RedisClientOpt).TLSConfig.ServerName != "h" {
		t.Errorf("rediss: ServerName not set: %#v", o)
	}
}

func TestParseErrorsNameTheProblemWithoutPasswords(t *testing.T) {
	cases := map[string]string{
		"":                                     "empty",
		"127.0.0.1:6379":                       "no scheme",
		"http://h":                             "unsupported scheme",
		"redis://:topsecret@h/x":               "database \"x\"",
		"redis-sentinel://:topsecret@s1:26379": "no master name",
		"redis-sentinel://s1?master=m&password=topsecret&pasword=x": "unknown parameter pasword",
		"redis-cluster://:topsecret@a:1,b:2/3":                      "only database 0",
		"redis-cluster://":                                          "no host",
		"redis-cluster://a:1?dial_timeout=soon":                     "dial_timeout=\"soon\"",
		"redis://h?pool_size=-1":                                    "pool_size",
	}
	for url, want := range cases {
		_, err := Parse(url)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", url, err, want)
			continue
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("Parse(%q): error shows the password: %v", url, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://u:pw@h:1/0": "redis://***@h:1/0",
		"redis-sentinel://:spw@a:1,b:2/0?master=m&password=mpw": "redis-sentinel://***@a:1,b:2/0?master=m&password=***",
		"redis-cluster://a:1,b:2":                               "redis-cluster://a:1,b:2",
		"not a url":                                             "not a url",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
