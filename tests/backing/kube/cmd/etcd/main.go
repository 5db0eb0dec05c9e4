// Command etcd is upstream etcd's own main (go.etcd.io/etcd/v3/main.go), built here against
// go.etcd.io/etcd/server/v3 at the version the pinned kubernetes release requires.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
