// Package scripts holds the tests of the repository's shell scripts.
package scripts

// Tests of test-deps.sh on a fake host: PATH holds only fakes of id, sudo and apt-get (which
// log their calls and "install" a package by creating its program) and whatever programs the
// case says are installed. Nothing on the real machine is installed or removed.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type host struct {
	uid      string   // what `id -u` prints
	sudo     string   // "" none, "nopass", "password" (sudo -n fails)
	noApt    bool     // no apt-get at all
	aptFails []string // packages apt-get cannot install
	have     []string // programs already installed
	env      []string // extra environment
}

type run struct {
	code           int
	stdout, stderr string
	calls          []string // sudo and apt-get calls, in order
	bin            string
}

func (h host) run(t *testing.T, args ...string) run {
	t.Helper()
	bin := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "calls.log")
	write := func(name, script string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/bash\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("id", "echo "+h.uid+"\n")
	for _, p := range h.have {
		write(p, "exit 0\n")
	}
	switch h.sudo {
	case "nopass", "password":
		rc := "0"
		if h.sudo == "password" {
			rc = "1"
		}
		write("sudo", `echo "sudo $*" >> `+logPath+`
if [ "$1" = -n ] && [ "$2" = true ]; then exit `+rc+`; fi
[ "$1" = -n ] && shift
exec "$@"
`)
		env, err := exec.LookPath("env")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(env, filepath.Join(bin, "env")); err != nil {
			t.Fatal(err)
		}
	}
	if !h.noApt {
		write("apt-get", `echo "apt-get $* [DEBIAN_FRONTEND=$DEBIAN_FRONTEND]" >> `+logPath+`
[ "$1" = install ] || exit 0
for p in "$@"; do
  case "$p" in -*|install) continue ;; esac
  case " `+strings.Join(h.aptFails, " ")+` " in *" $p "*) echo "E: Unable to locate package $p" >&2; exit 100 ;; esac
done
for p in "$@"; do
  case "$p" in -*|install) continue ;; esac
  printf '#!/bin/bash\nexit 0\n' > "`+bin+`/$p"
  /bin/chmod +x "`+bin+`/$p"
done
`)
	}
	script, err := filepath.Abs("test-deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/bash", append([]string{script}, args...)...)
	cmd.Env = append([]string{"PATH=" + bin}, h.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r := run{code: code, stdout: stdout.String(), stderr: stderr.String(), bin: bin}
	if data, err := os.ReadFile(logPath); err == nil {
		r.calls = strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	return r
}

func (r run) installed(p string) bool {
	_, err := os.Stat(filepath.Join(r.bin, p))
	return err == nil
}

func (r run) wantCode(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s\ncalls: %q", r.code, code, r.stdout, r.stderr, r.calls)
	}
}

func (r run) wantCalls(t *testing.T, want ...string) {
	t.Helper()
	if strings.Join(r.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls\n got %q\nwant %q", r.calls, want)
	}
}

func (r run) wantStderr(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
}

const nonInteractive = " [DEBIAN_FRONTEND=noninteractive]"

func TestEverythingInstalledDoesNothing(t *testing.T) {
	t.Parallel()
	r := host{uid: "1000", have: []string{"redis-server", "redis-sentinel", "chromium"}}.run(t)
	r.wantCode(t, 0)
	r.wantCalls(t)
	if r.stderr != "" || r.stdout != "" {
		t.Errorf("output %q %q, want none", r.stdout, r.stderr)
	}
	// Any Chromium name the browser test accepts will do, and so does PROXYQ_CHROMIUM.
	host{uid: "1000", have: []string{"redis-server", "redis-sentinel", "google-chrome"}}.run(t).wantCalls(t)
	host{uid: "1000", have: []string{"redis-server", "redis-sentinel"}, env: []string{"PROXYQ_CHROMIUM=/opt/c"}}.run(t).wantCalls(t)
}

func TestRootInstallsWhatIsMissing(t *testing.T) {
	t.Parallel()
	r := host{uid: "0", have: []string{"redis-sentinel"}}.run(t)
	r.wantCode(t, 0)
	r.wantCalls(t,
		"apt-get update -qq"+nonInteractive,
		"apt-get install -y -qq --no-install-recommends redis-server"+nonInteractive,
		"apt-get install -y -qq --no-install-recommends chromium"+nonInteractive)
	if !r.installed("redis-server") || !r.installed("chromium") {
		t.Errorf("not installed")
	}
	r.wantStderr(t, "test-deps: installing redis-server chromium")
}

func TestPasswordlessSudoInstalls(t *testing.T) {
	t.Parallel()
	r := host{uid: "1000", sudo: "nopass", have: []string{"chromium", "redis-sentinel"}}.run(t, "make")
	r.wantCode(t, 0)
	r.wantCalls(t,
		"sudo -n true",
		"sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
		"apt-get update -qq"+nonInteractive,
		"sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server make",
		"apt-get install -y -qq --no-install-recommends redis-server make"+nonInteractive)
	if !r.installed("make") {
		t.Errorf("make (an extra required program) not installed")
	}
}

func TestNoPrivilegeFailsAtOnceWithTheCommand(t *testing.T) {
	t.Parallel()
	r := host{uid: "1000", sudo: "password"}.run(t)
	r.wantCode(t, 1)
	r.wantStderr(t, "missing: redis-server; not root and no password-less sudo, so run:",
		"    sudo apt-get install -y redis-server redis-sentinel chromium\n")
	r.wantCalls(t, "sudo -n true") // nothing installed, nothing asked for a password

	r = host{uid: "1000"}.run(t)
	r.wantCode(t, 1)
	r.wantStderr(t, "    (as root) apt-get install -y redis-server redis-sentinel chromium\n")
	r.wantCalls(t)
}

func TestOptionalOnlyNeverFails(t *testing.T) {
	t.Parallel()
	// Unprivileged: a note with the command, exit 0.
	r := host{uid: "1000", sudo: "password", have: []string{"redis-server"}}.run(t)
	r.wantCode(t, 0)
	r.wantStderr(t, "note: redis-sentinel chromium not installed (the tests that need them will skip); to install: sudo apt-get install -y redis-sentinel chromium")
	// Root, but the package cannot be installed (Ubuntu has no "chromium" deb): exit 0.
	r = host{uid: "0", have: []string{"redis-server", "redis-sentinel"}, aptFails: []string{"chromium"}}.run(t)
	r.wantCode(t, 0)
	r.wantStderr(t, "note: could not install chromium; the tests that need them will skip")
	// TEST_DEPS_OPTIONAL=0 leaves them alone.
	r = host{uid: "0", have: []string{"redis-server"}, env: []string{"TEST_DEPS_OPTIONAL=0"}}.run(t)
	r.wantCode(t, 0)
	r.wantCalls(t)
}

func TestRequiredInstallFailureFails(t *testing.T) {
	t.Parallel()
	r := host{uid: "0", aptFails: []string{"redis-server"}, have: []string{"redis-sentinel", "chromium"}}.run(t)
	r.wantCode(t, 1)
	r.wantStderr(t, "could not install redis-server")
}

func TestRedisURLMakesRedisServerOptional(t *testing.T) {
	t.Parallel()
	r := host{uid: "1000", have: []string{"redis-sentinel", "chromium"}, env: []string{"REDIS_URL=redis://127.0.0.1:7777/0"}}.run(t)
	r.wantCode(t, 0)
	r.wantCalls(t)
}

func TestNoAptGet(t *testing.T) {
	t.Parallel()
	r := host{uid: "0", noApt: true, have: []string{"redis-sentinel", "chromium"}}.run(t)
	r.wantCode(t, 1)
	r.wantStderr(t, "missing: redis-server (no apt-get here")
	r = host{uid: "0", noApt: true, have: []string{"redis-server"}}.run(t)
	r.wantCode(t, 0)
	r.wantStderr(t, "note: redis-sentinel chromium not installed")
}

func TestDryRunPrintsTheCommands(t *testing.T) {
	t.Parallel()
	r := host{uid: "0", have: []string{"redis-sentinel", "chromium"}, env: []string{"DRY_RUN=1"}}.run(t)
	r.wantCode(t, 0)
	r.wantCalls(t)
	if want := "+ apt-get update -qq\n+ apt-get install -y -qq --no-install-recommends redis-server\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	if r.installed("redis-server") {
		t.Errorf("dry run installed")
	}
}

// TestWiring: `make test` and .ci/run both go through the script.
func TestWiring(t *testing.T) {
	t.Parallel()
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "\t./scripts/test-deps.sh\n") || !strings.Contains(string(mk), "test-go: test-deps") {
		t.Errorf("the Makefile's test target does not run scripts/test-deps.sh first")
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "scripts/test-deps.sh make") || !strings.Contains(string(ci), "\nmake test\n") {
		t.Errorf(".ci/run does not run scripts/test-deps.sh and make test")
	}
}
