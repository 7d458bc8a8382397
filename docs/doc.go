// Package docs holds proxyq's documentation beyond the README (the Markdown files beside this
// one) and, in its tests, the checks that keep it true: every relative link and #anchor in the
// repository's Markdown points at a file and heading that exist; the configuration reference
// (configuration.md) lists exactly the environment variables the code reads, and no other page
// repeats that table; performance.md keeps the markers `proxyq bench` writes between; and
// every section of the README as it was before the split is still reachable from the README.
// It has no Go API.
package docs
