package envconfig

import (
	"errors"
	"strings"

	"github.com/proxyq/proxyq/dashboard"
)

// DashboardCredentials fills cfg's credentials from PROXYQ_DASHBOARD_USER,
// PROXYQ_DASHBOARD_PASSWORD and PROXYQ_DASHBOARD_TOKEN.
func DashboardCredentials(getenv func(string) string, cfg *dashboard.Config) {
	e := New(getenv)
	cfg.User = e.String("PROXYQ_DASHBOARD_USER", "")
	// Secrets are taken as given (only surrounding newlines from a mounted file trimmed):
	// spaces inside a password are legitimate.
	cfg.Password = strings.Trim(getenv("PROXYQ_DASHBOARD_PASSWORD"), "\r\n")
	cfg.Token = e.String("PROXYQ_DASHBOARD_TOKEN", "")
}

// CheckDashboard validates cfg (after WithDefaults) and names the environment variable or flag
// behind the first problem.
func CheckDashboard(cfg dashboard.Config) error {
	err := cfg.WithDefaults().Validate()
	var ce *dashboard.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	if ce.Field == "auth" {
		return errors.New("authentication is required: set PROXYQ_DASHBOARD_USER and PROXYQ_DASHBOARD_PASSWORD, or PROXYQ_DASHBOARD_TOKEN, or pass --insecure-no-auth")
	}
	envOf := map[string]string{"User": "PROXYQ_DASHBOARD_USER", "Password": "PROXYQ_DASHBOARD_PASSWORD",
		"Token": "PROXYQ_DASHBOARD_TOKEN", "RootPath": "--root-path"}
	rule := strings.ReplaceAll(ce.Rule, "User is set", "PROXYQ_DASHBOARD_USER is set")
	rule = strings.ReplaceAll(rule, "Password is set", "PROXYQ_DASHBOARD_PASSWORD is set")
	return errors.New(envOf[ce.Field] + " " + rule)
}
