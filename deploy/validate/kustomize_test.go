package validate

import (
	"bytes"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// scaledObject is the subset of KEDA's keda.sh/v1alpha1 ScaledObject these
// manifests use. Decoding rejects unknown fields, so a typo (or a field this
// struct does not model yet) fails the test instead of being ignored by KEDA.
type scaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Name     string          `json:"name,omitempty"`
				Behavior json.RawMessage `json:"behavior,omitempty"` // autoscaling/v2 behavior, checked below
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			MetricType        string            `json:"metricType,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerAuthentication is the subset of KEDA's TriggerAuthentication used here.
type triggerAuthentication struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// Metadata keys of KEDA's redis (lists) scaler; anything else is a typo.
var redisScalerMetadata = map[string]bool{
	"address": true, "addressFromEnv": true, "host": true, "hostFromEnv": true, "port": true,
	"portFromEnv": true, "usernameFromEnv": true, "passwordFromEnv": true, "listName": true,
	"listLength": true, "activationListLength": true, "enableTLS": true, "unsafeSsl": true,
	"databaseIndex": true,
}

// rendered holds every object of a kustomize build, strictly decoded.
type rendered struct {
	namespaces   []corev1.Namespace
	configMaps   map[string]corev1.ConfigMap
	secrets      map[string]corev1.Secret
	deployments  map[string]appsv1.Deployment
	services     map[string]corev1.Service
	pdbs         []policyv1.PodDisruptionBudget
	scaledObjs   []scaledObject
	triggerAuths map[string]triggerAuthentication
	hpas         []autoscalingv2.HorizontalPodAutoscaler
	// namespace of every namespaced object, by kind/name.
	objectNamespaces map[string]string
}

// wantAPIVersion pins each kind to the API version the manifests must use.
var wantAPIVersion = map[string]string{
	"Namespace":             "v1",
	"ConfigMap":             "v1",
	"Secret":                "v1",
	"Service":               "v1",
	"Deployment":            "apps/v1",
	"PodDisruptionBudget":   "policy/v1",
	"ScaledObject":          "keda.sh/v1alpha1",
	"TriggerAuthentication": "keda.sh/v1alpha1",
	// Only in the HPA alternative documented in deploy/kubernetes/README.md.
	"HorizontalPodAutoscaler": "autoscaling/v2",
}

func renderKustomization(t *testing.T, fs filesys.FileSystem, dir string, restrictions kustypes.LoadRestrictions) rendered {
	t.Helper()
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = restrictions
	resMap, err := krusty.MakeKustomizer(opts).Run(fs, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := rendered{
		configMaps:       map[string]corev1.ConfigMap{},
		secrets:          map[string]corev1.Secret{},
		deployments:      map[string]appsv1.Deployment{},
		services:         map[string]corev1.Service{},
		triggerAuths:     map[string]triggerAuthentication{},
		objectNamespaces: map[string]string{},
	}
	for _, res := range resMap.Resources() {
		kind, name := res.GetKind(), res.GetName()
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s/%s: %v", kind, name, err)
		}
		if want, ok := wantAPIVersion[kind]; !ok {
			t.Errorf("unexpected kind %s (%s)", kind, name)
			continue
		} else if got := res.GetApiVersion(); got != want {
			t.Errorf("%s/%s: apiVersion %s, want %s", kind, name, got, want)
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("%s/%s: invalid name: %v", kind, name, errs)
		}
		if kind != "Namespace" {
			r.objectNamespaces[kind+"/"+name] = res.GetNamespace()
		}
		switch kind {
		case "Namespace":
			var o corev1.Namespace
			decodeStrict(t, y, &o)
			r.namespaces = append(r.namespaces, o)
		case "ConfigMap":
			var o corev1.ConfigMap
			decodeStrict(t, y, &o)
			r.configMaps[name] = o
		case "Secret":
			var o corev1.Secret
			decodeStrict(t, y, &o)
			r.secrets[name] = o
		case "Service":
			var o corev1.Service
			decodeStrict(t, y, &o)
			r.services[name] = o
		case "Deployment":
			var o appsv1.Deployment
			decodeStrict(t, y, &o)
			r.deployments[name] = o
		case "PodDisruptionBudget":
			var o policyv1.PodDisruptionBudget
			decodeStrict(t, y, &o)
			r.pdbs = append(r.pdbs, o)
		case "ScaledObject":
			var o scaledObject
			decodeJSONStrict(t, y, &o)
			r.scaledObjs = append(r.scaledObjs, o)
		case "TriggerAuthentication":
			var o triggerAuthentication
			decodeJSONStrict(t, y, &o)
			r.triggerAuths[name] = o
		case "HorizontalPodAutoscaler":
			var o autoscalingv2.HorizontalPodAutoscaler
			decodeStrict(t, y, &o)
			r.hpas = append(r.hpas, o)
		}
	}
	return r
}

// decodeStrict decodes YAML into a typed Kubernetes object, failing on unknown
// or duplicate fields (sigs.k8s.io/yaml.UnmarshalStrict).
func decodeStrict(t *testing.T, y []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(y, into); err != nil {
		t.Fatalf("strict decode into %T: %v\n%s", into, err, y)
	}
}

// decodeJSONStrict converts YAML to JSON and decodes it with
// DisallowUnknownFields, for the local CRD structs.
func decodeJSONStrict(t *testing.T, y []byte, into any) {
	t.Helper()
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("YAML to JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("strict decode into %T: %v\n%s", into, err, y)
	}
}

func renderOnDisk(t *testing.T, elem ...string) rendered {
	t.Helper()
	return renderKustomization(t, filesys.MakeFsOnDisk(), repoPath(elem...), kustypes.LoadRestrictionsRootOnly)
}

func TestKustomizeBase(t *testing.T) {
	t.Parallel()
	checkRendered(t, renderOnDisk(t, "deploy", "kubernetes", "base"))
}

func TestKustomizeOverlayExample(t *testing.T) {
	t.Parallel()
	r := renderOnDisk(t, "deploy", "kubernetes", "overlays", "example")
	checkRendered(t, r)

	if len(r.namespaces) != 1 {
		t.Fatalf("overlay renders %d Namespaces, want 1", len(r.namespaces))
	}
	ns := r.namespaces[0].Name
	for obj, got := range r.objectNamespaces {
		if got != ns {
			t.Errorf("%s in namespace %q, want %q", obj, got, ns)
		}
	}
	for name, d := range r.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			ref, tag, ok := strings.Cut(c.Image, ":")
			if !ok || tag == "" || tag == "latest" || ref == "proxyq" {
				t.Errorf("%s: image %q, want the overlay's registry and a pinned tag", name, c.Image)
			}
		}
	}
	if w := r.deployments["proxyq-worker"]; w.Spec.Replicas == nil || *w.Spec.Replicas < 2 {
		t.Errorf("overlay worker replicas = %v, want an explicit count ≥ 2", w.Spec.Replicas)
	}
	checkSecretRefs(t, r)

	raw := readRepoFile(t, "deploy", "kubernetes", "overlays", "example", "secrets.example.yaml")
	if !bytes.Contains(raw, []byte("external secret manager")) {
		t.Errorf("secrets.example.yaml must tell readers to use an external secret manager")
	}
}

// A downstream overlay that renames everything (namePrefix) must keep the KEDA
// references intact: that is what base/kustomizeconfig/keda.yaml is for.
func TestKustomizeNamePrefixKeepsKEDAReferences(t *testing.T) {
	t.Parallel()
	fs := kubernetesInMemory(t)
	overlay := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: staging-\nresources:\n  - ../example\n"
	if err := fs.WriteFile("/k/overlays/staging/kustomization.yaml", []byte(overlay)); err != nil {
		t.Fatal(err)
	}
	r := renderKustomization(t, fs, "/k/overlays/staging", kustypes.LoadRestrictionsRootOnly)
	if len(r.scaledObjs) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(r.scaledObjs))
	}
	so := r.scaledObjs[0]
	if got := so.Spec.ScaleTargetRef.Name; got != "staging-proxyq-worker" {
		t.Errorf("scaleTargetRef.name = %q, want staging-proxyq-worker", got)
	}
	checkSecretRefs(t, r)
	checkScaledObject(t, r)
}

// kubernetesInMemory copies deploy/kubernetes into an in-memory file system
// under /k, so tests can add overlays without writing to the repository.
func kubernetesInMemory(t *testing.T) filesys.FileSystem {
	t.Helper()
	fs := filesys.MakeFsInMemory()
	src := repoPath("deploy", "kubernetes")
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return fs.WriteFile(filepath.Join("/k", rel), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// readmeBlock returns the fenced code block that follows marker in
// deploy/kubernetes/README.md.
func readmeBlock(t *testing.T, marker string) []byte {
	t.Helper()
	readme := string(readRepoFile(t, "deploy", "kubernetes", "README.md"))
	_, after, ok := strings.Cut(readme, "<!-- "+marker)
	if !ok {
		t.Fatalf("README.md has no %q block", marker)
	}
	_, after, ok = strings.Cut(after, "```yaml\n")
	if !ok {
		t.Fatalf("README.md %q: no yaml block", marker)
	}
	block, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatalf("README.md %q: unterminated block", marker)
	}
	return []byte(block)
}

// The HPA alternative in the README must render on top of the base with KEDA
// removed, and decode strictly into autoscaling/v2 types.
func TestKustomizeHPAAlternative(t *testing.T) {
	t.Parallel()
	fs := kubernetesInMemory(t)
	for name, marker := range map[string]string{"kustomization.yaml": "no-keda-overlay", "hpa.yaml": "hpa-example"} {
		if err := fs.WriteFile("/k/overlays/hpa/"+name, readmeBlock(t, marker)); err != nil {
			t.Fatal(err)
		}
	}
	r := renderKustomization(t, fs, "/k/overlays/hpa", kustypes.LoadRestrictionsRootOnly)
	if len(r.scaledObjs) != 0 || len(r.triggerAuths) != 0 {
		t.Errorf("KEDA objects still rendered: %d ScaledObjects, %d TriggerAuthentications", len(r.scaledObjs), len(r.triggerAuths))
	}
	if len(r.hpas) != 1 {
		t.Fatalf("%d HPAs, want 1", len(r.hpas))
	}
	hpa := r.hpas[0]
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != findDeployment(t, r, "worker") {
		t.Errorf("HPA scaleTargetRef %+v is not the worker Deployment", ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 1 {
		t.Errorf("HPA minReplicas must be ≥ 1 (workers forward retries to pending)")
	}
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].External == nil {
		t.Fatalf("HPA must scale on one External metric")
	}
	if name := hpa.Spec.Metrics[0].External.Metric.Name; name != "asynq_queue_pending" {
		t.Errorf("HPA external metric %q, want asynq_queue_pending (defined by the adapter rule)", name)
	}

	var adapter struct {
		ExternalRules []struct {
			SeriesQuery string `json:"seriesQuery"`
			Resources   struct {
				Overrides map[string]struct {
					Resource string `json:"resource"`
				} `json:"overrides"`
			} `json:"resources"`
			Name struct {
				As string `json:"as"`
			} `json:"name"`
			MetricsQuery string `json:"metricsQuery"`
		} `json:"externalRules"`
	}
	if err := yaml.UnmarshalStrict(readmeBlock(t, "adapter-rule"), &adapter); err != nil {
		t.Fatalf("adapter rule: %v", err)
	}
	if len(adapter.ExternalRules) != 1 || adapter.ExternalRules[0].Name.As != "asynq_queue_pending" {
		t.Fatalf("adapter rule must define asynq_queue_pending")
	}
	rule := adapter.ExternalRules[0]
	query := strings.NewReplacer(",<<.LabelMatchers>>", "", "<<.LabelMatchers>>", "").Replace(rule.MetricsQuery)
	for _, q := range []string{rule.SeriesQuery, query} {
		for _, n := range metricNames(t, q) {
			if !metricAllowed(n) {
				t.Errorf("adapter rule uses %q, which proxyq does not export", n)
			}
		}
	}
}

// checkRendered holds the invariants every build (base or overlay) must keep.
func checkRendered(t *testing.T, r rendered) {
	t.Helper()

	cfg, ok := r.configMaps["proxyq-config"]
	if !ok || len(r.configMaps) != 1 {
		t.Fatalf("ConfigMaps %v, want exactly proxyq-config", keys(r.configMaps))
	}
	checkConfigMap(t, cfg)

	worker, ok := r.deployments[findDeployment(t, r, "worker")]
	if !ok {
		t.Fatal("no worker Deployment")
	}
	dashboard, ok := r.deployments[findDeployment(t, r, "dashboard")]
	if !ok {
		t.Fatal("no dashboard Deployment")
	}
	for _, d := range []appsv1.Deployment{worker, dashboard} {
		checkPodHardening(t, d)
	}
	checkWorker(t, worker, cfg)
	checkDashboard(t, r, dashboard)

	if len(r.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(r.pdbs))
	}
	pdb := r.pdbs[0]
	if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
		t.Errorf("PDB must set exactly one of minAvailable and maxUnavailable")
	}
	if !selects(t, pdb.Spec.Selector, worker.Spec.Template.Labels) || selects(t, pdb.Spec.Selector, dashboard.Spec.Template.Labels) {
		t.Errorf("PDB selector %v must select the worker pods only", pdb.Spec.Selector)
	}
	checkScaledObject(t, r)
}

func checkConfigMap(t *testing.T, cm corev1.ConfigMap) {
	t.Helper()
	for k := range cm.Data {
		if !strings.HasPrefix(k, "PROXYQ_") && !strings.HasPrefix(k, "REDIS_") {
			t.Errorf("ConfigMap key %s: want only PROXYQ_* or REDIS_* (credentials belong in Secrets)", k)
		}
		if !envVars[k] {
			t.Errorf("ConfigMap key %s is not a variable the product reads", k)
		}
	}
	if len(cm.BinaryData) > 0 {
		t.Errorf("ConfigMap has binaryData")
	}
	for _, k := range []string{"PROXYQ_HTTP_TIMEOUT", "PROXYQ_SHUTDOWN_TIMEOUT", "PROXYQ_SEND_WITHIN", "PROXYQ_RETENTION", "PROXYQ_POLL_INTERVAL"} {
		if v, ok := cm.Data[k]; ok {
			if _, err := time.ParseDuration(v); err != nil {
				t.Errorf("%s=%q: %v", k, v, err)
			}
		}
	}
	for _, k := range []string{"PROXYQ_CONCURRENCY", "PROXYQ_MAX_RETRY", "PROXYQ_MAX_IN_FLIGHT", "PROXYQ_RATE_LIMIT"} {
		if v, ok := cm.Data[k]; ok {
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				t.Errorf("%s=%q: want a non-negative integer", k, v)
			}
		}
	}
	// The shutdown budget covers an in-flight create plus a reconciliation list.
	if 2*duration(t, cm, "PROXYQ_HTTP_TIMEOUT") > duration(t, cm, "PROXYQ_SHUTDOWN_TIMEOUT") {
		t.Errorf("PROXYQ_SHUTDOWN_TIMEOUT must be ≥ 2 × PROXYQ_HTTP_TIMEOUT")
	}
}

func duration(t *testing.T, cm corev1.ConfigMap, key string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(cm.Data[key])
	if err != nil {
		t.Fatalf("ConfigMap %s=%q: %v", key, cm.Data[key], err)
	}
	return d
}

func findDeployment(t *testing.T, r rendered, component string) string {
	t.Helper()
	for name, d := range r.deployments {
		if d.Spec.Template.Labels["app.kubernetes.io/component"] == component {
			return name
		}
	}
	t.Fatalf("no Deployment with component %q", component)
	return ""
}

func checkPodHardening(t *testing.T, d appsv1.Deployment) {
	t.Helper()
	if !selects(t, d.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("%s: selector does not match the pod template labels", d.Name)
	}
	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot must be true", d.Name)
	}
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod must run as a non-zero uid", d.Name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile must be RuntimeDefault", d.Name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false (no API access needed)", d.Name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", d.Name, len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: container has no securityContext", d.Name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allowPrivilegeEscalation must be false", d.Name)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: readOnlyRootFilesystem must be true", d.Name)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s: capabilities must drop ALL and add none", d.Name)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[res]
		lim, okLim := c.Resources.Limits[res]
		if !okReq || !okLim {
			t.Errorf("%s: %s needs both a request and a limit", d.Name, res)
		} else if req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %s exceeds limit %s", d.Name, res, req.String(), lim.String())
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p == nil {
			t.Errorf("%s: missing liveness or readiness probe", d.Name)
			continue
		}
		var port intstr.IntOrString
		switch {
		case p.HTTPGet != nil:
			port = p.HTTPGet.Port
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port
		default:
			t.Errorf("%s: probe must be httpGet or tcpSocket", d.Name)
			continue
		}
		if _, ok := containerPort(c, port); !ok {
			t.Errorf("%s: probe port %s is not a container port", d.Name, port.String())
		}
	}
}

func checkWorker(t *testing.T, d appsv1.Deployment, cfg corev1.ConfigMap) {
	t.Helper()
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if !slices.Equal(c.Args, []string{"worker"}) {
		t.Errorf("worker args = %q, want [worker]", c.Args)
	}

	admin, ok := containerPort(c, intstr.FromString("admin"))
	if !ok || admin != adminPort {
		t.Errorf("worker port \"admin\" = %d, want %d", admin, adminPort)
	}
	_, addrPort, err := net.SplitHostPort(cfg.Data["PROXYQ_ADMIN_ADDR"])
	if err != nil || addrPort != strconv.Itoa(int(admin)) {
		t.Errorf("PROXYQ_ADMIN_ADDR=%q does not listen on the admin port %d", cfg.Data["PROXYQ_ADMIN_ADDR"], admin)
	}
	for _, tc := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if tc.probe == nil || tc.probe.HTTPGet == nil || tc.probe.HTTPGet.Path != tc.path || tc.probe.HTTPGet.Port != intstr.FromString("admin") {
			t.Errorf("worker %s probe must be httpGet %s on port admin", tc.name, tc.path)
		}
	}

	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(adminPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("worker scrape annotations = %v, want scrape=true port=%d path=/metrics", ann, adminPort)
	}

	shutdown := duration(t, cfg, "PROXYQ_SHUTDOWN_TIMEOUT")
	grace := pod.TerminationGracePeriodSeconds
	if grace == nil {
		t.Errorf("worker terminationGracePeriodSeconds unset (default 30s), want ≥ PROXYQ_SHUTDOWN_TIMEOUT (%s) + 10s", shutdown)
	} else if time.Duration(*grace)*time.Second < shutdown+10*time.Second {
		t.Errorf("worker terminationGracePeriodSeconds = %d, want ≥ PROXYQ_SHUTDOWN_TIMEOUT (%s) + 10s", *grace, shutdown)
	}

	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cfg.Name {
		t.Errorf("worker envFrom = %+v, want the ConfigMap %s", c.EnvFrom, cfg.Name)
	}
	seen := map[string]bool{}
	for _, e := range c.Env {
		seen[e.Name] = true
		if !envVars[e.Name] {
			t.Errorf("worker env %s is not a variable the product reads", e.Name)
		}
		if e.Value != "" && (strings.HasPrefix(e.Name, "TWILIO_") || e.Name == "REDIS_URL") {
			t.Errorf("worker env %s has a literal value; it must come from a Secret", e.Name)
		}
		if strings.HasPrefix(e.Name, "TWILIO_") {
			ref := secretRef(e)
			if ref == nil || ref.Optional == nil || !*ref.Optional {
				t.Errorf("worker env %s must be an optional secretKeyRef (API key or auth token form)", e.Name)
			}
		}
	}
	for _, k := range []string{"REDIS_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET"} {
		if !seen[k] {
			t.Errorf("worker env lacks %s", k)
		}
	}
}

func checkDashboard(t *testing.T, r rendered, d appsv1.Deployment) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"dashboard", "--addr", ":8080"}) {
		t.Errorf("dashboard args = %q", c.Args)
	}
	names := map[string]*corev1.SecretKeySelector{}
	for _, e := range c.Env {
		names[e.Name] = secretRef(e)
	}
	for _, k := range []string{"PROXYQ_DASHBOARD_USER", "PROXYQ_DASHBOARD_PASSWORD"} {
		if ref := names[k]; ref == nil || (ref.Optional != nil && *ref.Optional) {
			t.Errorf("dashboard %s must come from a required secretKeyRef, so it never starts without auth", k)
		}
	}
	var svc *corev1.Service
	for _, s := range r.services {
		if selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, d.Spec.Template.Labels) {
			svc = &s
		}
	}
	if svc == nil {
		t.Fatalf("no Service selects the dashboard pods")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != dashboardPort {
		t.Fatalf("dashboard Service ports %+v, want %d", svc.Spec.Ports, dashboardPort)
	}
	if n, ok := containerPort(c, svc.Spec.Ports[0].TargetPort); !ok || n != dashboardPort {
		t.Errorf("dashboard Service targetPort %s does not reach container port %d", svc.Spec.Ports[0].TargetPort.String(), dashboardPort)
	}
}

func checkScaledObject(t *testing.T, r rendered) {
	t.Helper()
	if len(r.scaledObjs) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(r.scaledObjs))
	}
	so := r.scaledObjs[0]
	spec := so.Spec
	target, ok := r.deployments[spec.ScaleTargetRef.Name]
	if !ok || target.Spec.Template.Labels["app.kubernetes.io/component"] != "worker" {
		t.Errorf("scaleTargetRef.name %q is not the worker Deployment", spec.ScaleTargetRef.Name)
	}
	if k := spec.ScaleTargetRef.Kind; k != "" && k != "Deployment" {
		t.Errorf("scaleTargetRef.kind = %q", k)
	}
	// asynq forwards scheduled/retry tasks to pending from inside a worker:
	// scaling to zero would strand them.
	if spec.MinReplicaCount == nil || *spec.MinReplicaCount < 1 {
		t.Errorf("minReplicaCount = %v, want ≥ 1", spec.MinReplicaCount)
	}
	if spec.MaxReplicaCount == nil || spec.MinReplicaCount == nil || *spec.MaxReplicaCount < *spec.MinReplicaCount {
		t.Errorf("maxReplicaCount = %v, want ≥ minReplicaCount", spec.MaxReplicaCount)
	}
	if a := spec.Advanced; a != nil && a.HorizontalPodAutoscalerConfig != nil && a.HorizontalPodAutoscalerConfig.Behavior != nil {
		var b struct {
			ScaleUp   json.RawMessage `json:"scaleUp,omitempty"`
			ScaleDown json.RawMessage `json:"scaleDown,omitempty"`
		}
		dec := json.NewDecoder(bytes.NewReader(a.HorizontalPodAutoscalerConfig.Behavior))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			t.Errorf("advanced.horizontalPodAutoscalerConfig.behavior: %v", err)
		}
	}

	var lists []string
	for i, tr := range spec.Triggers {
		if tr.Type != "redis" {
			t.Errorf("trigger %d type %q, want redis (lists scaler)", i, tr.Type)
			continue
		}
		for k := range tr.Metadata {
			if !redisScalerMetadata[k] {
				t.Errorf("trigger %d: unknown redis scaler metadata %q", i, k)
			}
		}
		for _, k := range []string{"address", "host", "port", "passwordFromEnv", "addressFromEnv"} {
			if _, ok := tr.Metadata[k]; ok {
				t.Errorf("trigger %d sets %s inline; the Redis address and password come from the TriggerAuthentication", i, k)
			}
		}
		lists = append(lists, tr.Metadata["listName"])
		if n, err := strconv.Atoi(tr.Metadata["listLength"]); err != nil || n <= 0 {
			t.Errorf("trigger %d listLength %q, want a positive integer", i, tr.Metadata["listLength"])
		}
		if tr.AuthenticationRef == nil {
			t.Errorf("trigger %d has no authenticationRef", i)
			continue
		}
		ta, ok := r.triggerAuths[tr.AuthenticationRef.Name]
		if !ok {
			t.Errorf("trigger %d authenticationRef %q: no such TriggerAuthentication", i, tr.AuthenticationRef.Name)
			continue
		}
		params := map[string]bool{}
		for _, ref := range ta.Spec.SecretTargetRef {
			params[ref.Parameter] = true
		}
		if !params["address"] || !params["password"] {
			t.Errorf("TriggerAuthentication %s parameters %v, want address and password", ta.Metadata.Name, params)
		}
	}
	// asynq's pending list for queue "default"; the braces are part of the key.
	if !slices.Contains(lists, "asynq:{default}:pending") {
		t.Errorf("triggers watch %q, want asynq:{default}:pending", lists)
	}
	for _, l := range lists {
		q, ok := strings.CutPrefix(l, "asynq:{")
		if q, ok2 := strings.CutSuffix(q, "}:pending"); !ok || !ok2 || q == "" {
			t.Errorf("listName %q is not an asynq pending list (asynq:{QUEUE}:pending)", l)
		}
	}
}

// checkSecretRefs checks that every Secret a rendered overlay references
// exists with the referenced keys, and that KEDA reads the same database
// number as the workers.
func checkSecretRefs(t *testing.T, r rendered) {
	t.Helper()
	has := func(name, key string) bool {
		s, ok := r.secrets[name]
		if !ok {
			return false
		}
		_, inData := s.Data[key]
		_, inString := s.StringData[key]
		return inData || inString
	}
	for _, d := range r.deployments {
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			ref := secretRef(e)
			if ref == nil || (ref.Optional != nil && *ref.Optional) {
				continue
			}
			if !has(ref.Name, ref.Key) {
				t.Errorf("%s env %s: Secret %s has no key %s", d.Name, e.Name, ref.Name, ref.Key)
			}
		}
	}
	for _, ta := range r.triggerAuths {
		for _, ref := range ta.Spec.SecretTargetRef {
			if !has(ref.Name, ref.Key) {
				t.Errorf("TriggerAuthentication %s: Secret %s has no key %s", ta.Metadata.Name, ref.Name, ref.Key)
			}
		}
	}

	worker := r.deployments[findDeployment(t, r, "worker")]
	for _, e := range worker.Spec.Template.Spec.Containers[0].Env {
		if e.Name != "REDIS_URL" {
			continue
		}
		ref := secretRef(e)
		s := r.secrets[ref.Name]
		raw := s.StringData[ref.Key]
		if raw == "" {
			raw = string(s.Data[ref.Key])
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("REDIS_URL in Secret %s: %v", ref.Name, err)
		}
		db := strings.Trim(u.Path, "/")
		if db == "" {
			db = "0"
		}
		for _, so := range r.scaledObjs {
			for _, tr := range so.Spec.Triggers {
				idx := tr.Metadata["databaseIndex"]
				if idx == "" {
					idx = "0"
				}
				if idx != db {
					t.Errorf("KEDA databaseIndex %s, but REDIS_URL uses database %s", idx, db)
				}
			}
		}
	}
}

func secretRef(e corev1.EnvVar) *corev1.SecretKeySelector {
	if e.ValueFrom == nil {
		return nil
	}
	return e.ValueFrom.SecretKeyRef
}

func containerPort(c corev1.Container, port intstr.IntOrString) (int32, bool) {
	for _, p := range c.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
