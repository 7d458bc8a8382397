package validate

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	dfparser "github.com/moby/buildkit/frontend/dockerfile/parser"
)

// instruction is one parsed Dockerfile instruction.
type instruction struct {
	cmd   string // lower case: from, run, arg, …
	args  []string
	flags []string
	json  bool
	line  int
}

type stage struct {
	from  instruction
	name  string
	insts []instruction
}

// parseDockerfile parses deploy/Dockerfile with BuildKit's own parser and
// splits it into global ARGs and build stages.
func parseDockerfile(t *testing.T) (globalArgs map[string]string, stages []stage) {
	t.Helper()
	res, err := dfparser.Parse(bytes.NewReader(readRepoFile(t, "deploy", "Dockerfile")))
	if err != nil {
		t.Fatalf("parse deploy/Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("deploy/Dockerfile: %s", w.Short)
	}
	globalArgs = map[string]string{}
	for _, n := range res.AST.Children {
		in := instruction{cmd: strings.ToLower(n.Value), flags: n.Flags, json: n.Attributes["json"], line: n.StartLine}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		switch {
		case in.cmd == "from":
			st := stage{from: in}
			if len(in.args) == 3 && strings.EqualFold(in.args[1], "as") {
				st.name = in.args[2]
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "arg":
			k, v, _ := strings.Cut(in.args[0], "=")
			globalArgs[k] = v
		case len(stages) == 0:
			t.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].insts = append(stages[len(stages)-1].insts, in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a runtime stage", len(stages))
	}
	return globalArgs, stages
}

// index returns the position of the first instruction matching cmd whose
// joined arguments contain substr, or -1.
func (s stage) index(cmd, substr string) int {
	return slices.IndexFunc(s.insts, func(in instruction) bool {
		return in.cmd == cmd && strings.Contains(strings.Join(in.args, " "), substr)
	})
}

// argDeclared reports whether ARG name is declared in the stage before
// position pos: a global ARG is not visible inside a stage without it.
func (s stage) argDeclared(name string, pos int) bool {
	for _, in := range s.insts[:pos] {
		if in.cmd == "arg" {
			if k, _, _ := strings.Cut(in.args[0], "="); k == name {
				return true
			}
		}
	}
	return false
}

var goDirective = regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?\s*$`)
var moduleDirective = regexp.MustCompile(`(?m)^module (\S+)\s*$`)

func TestDockerfileBuilder(t *testing.T) {
	t.Parallel()
	globals, stages := parseDockerfile(t)
	b := stages[0]
	if b.name != "builder" {
		t.Fatalf("first stage is %q, want builder", b.name)
	}

	// golang:<minor>-bookworm, where <minor> matches the root go.mod.
	image := b.from.args[0]
	for k, v := range globals {
		image = strings.ReplaceAll(image, "${"+k+"}", v)
	}
	gomod := readRepoFile(t, "go.mod")
	m := goDirective.FindSubmatch(gomod)
	if m == nil {
		t.Fatalf("go.mod has no go directive")
	}
	if want := "golang:" + string(m[1]) + "-bookworm"; image != want {
		t.Errorf("builder image %q, want %s (go.mod says go %s)", image, want, m[1])
	}

	copyMod := b.index("copy", "go.mod go.sum")
	download := b.index("run", "go mod download")
	copyAll := slices.IndexFunc(b.insts, func(in instruction) bool {
		return in.cmd == "copy" && slices.Equal(in.args, []string{".", "."})
	})
	if copyMod < 0 || download < 0 || copyAll < 0 || !(copyMod < download && download < copyAll) {
		t.Errorf("want COPY go.mod go.sum, then RUN go mod download, then COPY . . (dependency layer caching); got positions %d, %d, %d", copyMod, download, copyAll)
	}

	build := b.index("run", "go build")
	if build < 0 {
		t.Fatalf("builder has no go build")
	}
	cmd := strings.Join(b.insts[build].args, " ")
	module := moduleDirective.FindSubmatch(gomod)
	if module == nil {
		t.Fatalf("go.mod has no module directive")
	}
	stamp := "-X " + string(module[1]) + "/proxyclient.Version=${VERSION}"
	for _, want := range []string{"-trimpath", "-s -w", stamp, "-o /out/proxyq", "./cmd/proxyq"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("go build %q lacks %q", cmd, want)
		}
	}
	if !b.argDeclared("VERSION", build) {
		t.Errorf("ARG VERSION is not declared in the builder stage before go build: ${VERSION} would be empty")
	}
	cgoOff := strings.Contains(cmd, "CGO_ENABLED=0")
	for _, in := range b.insts[:build] {
		if in.cmd == "env" {
			for i := 0; i+1 < len(in.args); i += 3 { // key, value, "=" triples
				if in.args[i] == "CGO_ENABLED" && in.args[i+1] == "0" {
					cgoOff = true
				}
			}
		}
	}
	if !cgoOff {
		t.Errorf("CGO_ENABLED=0 is not set for go build: the binary would not be static")
	}
}

func TestDockerfileRuntime(t *testing.T) {
	t.Parallel()
	_, stages := parseDockerfile(t)
	r := stages[len(stages)-1]

	if got := r.from.args[0]; got != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime image %q, want gcr.io/distroless/static-debian12:nonroot", got)
	}
	last := func(cmd string) *instruction {
		for i := len(r.insts) - 1; i >= 0; i-- {
			if r.insts[i].cmd == cmd {
				return &r.insts[i]
			}
		}
		return nil
	}

	// Numeric, non-zero uid: Kubernetes' runAsNonRoot can only verify numbers,
	// and the manifests set runAsUser 65532.
	if u := last("user"); u == nil {
		t.Errorf("runtime stage has no USER")
	} else {
		uid, _, _ := strings.Cut(u.args[0], ":")
		if n, err := strconv.Atoi(uid); err != nil || n != 65532 {
			t.Errorf("USER %q, want 65532 (distroless nonroot, numeric)", u.args[0])
		}
	}
	if e := last("entrypoint"); e == nil || !e.json || !slices.Equal(e.args, []string{"/proxyq"}) {
		t.Errorf("ENTRYPOINT must be exec form [\"/proxyq\"]")
	}
	if c := last("cmd"); c == nil || !c.json || !slices.Equal(c.args, []string{"worker"}) {
		t.Errorf("CMD must be exec form [\"worker\"]")
	}
	if r.index("expose", strconv.Itoa(adminPort)) < 0 {
		t.Errorf("runtime stage does not EXPOSE %d", adminPort)
	}
	cp := r.index("copy", "/out/proxyq /proxyq")
	if cp < 0 || !slices.Contains(r.insts[cp].flags, "--from=builder") {
		t.Errorf("runtime stage must COPY --from=builder /out/proxyq /proxyq")
	}
	for _, in := range r.insts {
		if in.cmd == "run" {
			t.Errorf("line %d: RUN in the distroless stage (it has no shell)", in.line)
		}
	}

	label := r.index("label", "org.opencontainers.image.version")
	if label < 0 {
		t.Fatalf("no org.opencontainers.image.version label")
	}
	labels := map[string]string{}
	args := r.insts[label].args
	for i := 0; i+1 < len(args); i += 3 {
		labels[args[i]] = strings.Trim(args[i+1], `"`)
	}
	if labels["org.opencontainers.image.version"] != "${VERSION}" {
		t.Errorf("image.version label %q, want ${VERSION}", labels["org.opencontainers.image.version"])
	}
	if !r.argDeclared("VERSION", label) {
		t.Errorf("ARG VERSION is not declared in the runtime stage before LABEL: the version label would be empty")
	}
	for _, k := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source"} {
		if labels[k] == "" {
			t.Errorf("label %s missing", k)
		}
	}
}

// -X silently does nothing unless the target is a package-level string
// variable initialised by a constant (or not at all): check the product keeps
// it that way.
func TestVersionStampTarget(t *testing.T) {
	t.Parallel()
	dir := repoPath("proxyclient")
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		t.Skip("proxyclient package not written yet")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	found := false
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatalf("parse proxyclient: %v", err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if name.Name != "Version" {
						continue
					}
					found = true
					typed := false
					if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "string" {
						typed = true
					}
					if i < len(vs.Values) {
						lit, ok := vs.Values[i].(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							t.Errorf("proxyclient.Version must be initialised with a string literal for -X to work")
						}
						typed = typed || ok && lit.Kind == token.STRING
					}
					if !typed {
						t.Errorf("proxyclient.Version must be a string variable")
					}
				}
			}
		}
	}
	if !found {
		t.Errorf("proxyclient has no package-level var Version: the Dockerfile's -X stamp would be ignored")
	}
}
