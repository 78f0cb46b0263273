package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionCmd returns "agentpg version".
func (c *cli) versionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print agentpg's version and the Go version it was built with",
		Long: `Print agentpg's version, the version of its module as go install built it, or
(devel) for a build from a work tree, and the Go version it was built with.
With --json: {"version": "...", "go": "..."}.`,
	}
	return c.leaf(cmd, []string{flagJSON}, func(context.Context) error {
		v := buildVersion{Version: moduleVersion(), Go: runtime.Version()}
		if c.json {
			return writeJSON(c.stdout, v)
		}
		_, err := fmt.Fprintf(c.stdout, "agentpg %s, built with %s\n", v.Version, v.Go)
		return err
	})
}

// buildVersion is what version prints.
type buildVersion struct {
	Version string `json:"version"`
	Go      string `json:"go"`
}

// moduleVersion returns the version of agentpg's module, or "(devel)" when
// the build does not know it.
func moduleVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok || info.Main.Version == "" {
		return "(devel)"
	}
	return info.Main.Version
}
