package validate

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads docker-compose.yml with schema validation, normalisation
// and consistency checks on, interpolating ${...} from env only. Service
// environments are not resolved, so a developer's real .env is never read.
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	root, err := filepath.Abs(repoPath())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "docker-compose.yml")
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: file, Content: readRepoFile(t, "docker-compose.yml")}},
		Environment: env,
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SkipResolveEnvironment = true
	})
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %q: %v", name, err)
	}
	return s
}

func envValue(s types.ServiceConfig, key string) (string, bool) {
	v, ok := s.Environment[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, map[string]string{})

	if p.Name != "proxyq" {
		t.Errorf("project name = %q, want proxyq", p.Name)
	}
	want := []string{"api", "dashboard", "redis", "sandbox", "worker"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Errorf("services = %v, want %v", sorted(got), want)
	}

	tests := []struct {
		service string
		command []string
		port    int // published on 127.0.0.1; 0 = none
	}{
		{"sandbox", []string{"sandbox", "--addr", ":4010"}, sandboxPort},
		{"worker", []string{"worker"}, 0},
		{"dashboard", []string{"dashboard", "--addr", ":8080"}, dashboardPort},
		{"api", []string{"serve", "--addr", ":8081"}, apiPort},
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			t.Parallel()
			s := service(t, p, tc.service)
			if !slices.Equal([]string(s.Command), tc.command) {
				t.Errorf("command = %q, want %q", s.Command, tc.command)
			}
			if !subcommands[s.Command[0]] {
				t.Errorf("command %q is not a proxyq subcommand", s.Command[0])
			}
			if s.Build == nil {
				t.Fatalf("no build section")
			}
			if s.Build.Context != p.WorkingDir {
				t.Errorf("build context = %q, want the repository root %q", s.Build.Context, p.WorkingDir)
			}
			if s.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("dockerfile = %q, want deploy/Dockerfile", s.Build.Dockerfile)
			}
			if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
				t.Errorf("read_only=%v cap_drop=%v, want a read-only root and ALL capabilities dropped", s.ReadOnly, s.CapDrop)
			}
			var published []int
			for _, port := range s.Ports {
				n, err := strconv.Atoi(port.Published)
				if err != nil {
					t.Errorf("published port %q: %v", port.Published, err)
				}
				published = append(published, n)
				if port.HostIP != "127.0.0.1" {
					t.Errorf("port %s published on %q, want 127.0.0.1 only", port.Published, port.HostIP)
				}
			}
			if tc.port == 0 && len(published) > 0 {
				t.Errorf("published ports %v, want none", published)
			}
			if tc.port != 0 && !slices.Equal(published, []int{tc.port}) {
				t.Errorf("published ports %v, want [%d]", published, tc.port)
			}
			if tc.service != "sandbox" {
				if got, _ := envValue(s, "REDIS_URL"); got != "redis://redis:6379/0" {
					t.Errorf("REDIS_URL = %q, want redis://redis:6379/0", got)
				}
				if len(s.EnvFiles) != 1 || s.EnvFiles[0].Path != filepath.Join(p.WorkingDir, ".env") || bool(s.EnvFiles[0].Required) {
					t.Errorf("env_file = %+v, want one optional .env at the repository root", s.EnvFiles)
				}
				if dep, ok := s.DependsOn["redis"]; !ok || dep.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on redis = %+v, want condition service_healthy", dep)
				}
			}
		})
	}
}

func TestComposeRedis(t *testing.T) {
	t.Parallel()
	s := service(t, loadCompose(t, map[string]string{}), "redis")

	if !strings.HasPrefix(s.Image, "redis:7") {
		t.Errorf("image = %q, want redis:7", s.Image)
	}
	// Each flag must be directly followed by its value.
	for flag, value := range map[string]string{"--appendonly": "yes", "--maxmemory-policy": "noeviction", "--hash-max-listpack-value": "1024"} {
		i := slices.Index(s.Command, flag)
		if i < 0 || i+1 >= len(s.Command) || s.Command[i+1] != value {
			t.Errorf("command %q lacks %s %s", s.Command, flag, value)
		}
	}
	if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Target == "/data"
	}) {
		t.Errorf("volumes = %+v, want a named volume on /data", s.Volumes)
	}
	if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
		t.Errorf("healthcheck = %+v, want one", s.HealthCheck)
	}
}

func TestComposeWorker(t *testing.T) {
	t.Parallel()
	s := service(t, loadCompose(t, map[string]string{}), "worker")

	if s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas != 2 {
		t.Errorf("deploy.replicas = %v, want 2", s.Deploy)
	}
	if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < 60*time.Second {
		t.Errorf("stop_grace_period = %v, want ≥ 60s (PROXYQ_SHUTDOWN_TIMEOUT 45s + 15s)", s.StopGracePeriod)
	}
	if got, _ := envValue(s, "PROXYQ_ADMIN_ADDR"); got != ":"+strconv.Itoa(adminPort) {
		t.Errorf("PROXYQ_ADMIN_ADDR = %q, want :%d", got, adminPort)
	}
	hc := s.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Test[1] != "/proxyq" {
		t.Fatalf("healthcheck = %+v, want an exec-form test running /proxyq (distroless has no shell)", hc)
	}
	if !subcommands[hc.Test[2]] {
		t.Errorf("healthcheck runs %q, not a proxyq subcommand", hc.Test[2])
	}
	if !strings.Contains(strings.Join(hc.Test, " "), "127.0.0.1:9090/readyz") {
		t.Errorf("healthcheck %q does not probe the admin /readyz", hc.Test)
	}
	for k := range s.Environment {
		if !envVars[k] {
			t.Errorf("environment sets %s, which the product does not read", k)
		}
	}
}

// The API base URL decides sandbox versus live Twilio, so its interpolation is
// pinned: unset stays on the sandbox; only an explicit value goes live.
func TestComposeAPIBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unset uses the sandbox", map[string]string{}, "http://sandbox:4010"},
		{"empty goes live with the client default", map[string]string{"PROXYQ_API_BASE_URL": ""}, ""},
		{"explicit URL", map[string]string{"PROXYQ_API_BASE_URL": "https://proxy.twilio.com"}, "https://proxy.twilio.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := service(t, loadCompose(t, tc.env), "worker")
			got, ok := envValue(s, "PROXYQ_API_BASE_URL")
			if !ok || got != tc.want {
				t.Errorf("PROXYQ_API_BASE_URL = %q (set %v), want %q", got, ok, tc.want)
			}
		})
	}
}

func TestComposeVersionBuildArg(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, map[string]string{"PROXYQ_VERSION": "1.2.3"})
	for _, name := range []string{"sandbox", "worker", "dashboard", "api"} {
		s := service(t, p, name)
		if v := s.Build.Args["VERSION"]; v == nil || *v != "1.2.3" {
			t.Errorf("%s: build arg VERSION = %v, want 1.2.3 from PROXYQ_VERSION", name, v)
		}
	}
}

// deploy/env.example is what users copy to .env: it must parse as compose
// parses env files, set only variables the product reads, and keep the sandbox
// (PROXYQ_API_BASE_URL not set) so copying it never goes live.
func TestEnvExample(t *testing.T) {
	t.Parallel()
	raw := readRepoFile(t, "deploy", "env.example")
	vars, err := dotenv.ParseWithLookup(bytes.NewReader(raw), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("parse env.example: %v", err)
	}
	for k := range vars {
		if !envVars[k] {
			t.Errorf("env.example sets %s, which the product does not read", k)
		}
	}
	if _, ok := vars["PROXYQ_API_BASE_URL"]; ok {
		t.Errorf("env.example sets PROXYQ_API_BASE_URL: a copied example must stay on the sandbox")
	}
	for _, k := range []string{"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET", "PROXYQ_API_BASE_URL", "PROXYQ_API_TOKENS", "PROXYQ_DASHBOARD_USER", "PROXYQ_DASHBOARD_PASSWORD"} {
		if !bytes.Contains(raw, []byte(k)) {
			t.Errorf("env.example does not document %s", k)
		}
	}
	if sid := vars["TWILIO_ACCOUNT_SID"]; sid != "" && (len(sid) != 34 || strings.Trim(sid[2:], "0") != "") {
		t.Errorf("env.example TWILIO_ACCOUNT_SID = %q, want a placeholder", sid)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
