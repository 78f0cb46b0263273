//go:build !unix

package main

import (
	"context"
	"errors"
)

// cluster is a throwaway PostgreSQL cluster; see cluster.go. Starting one
// needs a Unix system.
type cluster struct{ dir, dsn string }

func startCluster(context.Context) (*cluster, error) {
	return nil, errors.New("throwaway clusters need a Unix system: set DATABASE_URL")
}

func (*cluster) stop() error { return nil }
