// The distribution registry with only the filesystem storage driver: built by
// e2e/toolchain/kind instead of the registry's own main, which also compiles the Azure, GCS and
// S3 drivers and their SDKs (several times the build time) that a local registry never uses.
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
