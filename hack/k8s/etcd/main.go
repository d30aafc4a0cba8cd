// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 as a dependency.
//
// etcd's own main module carries replace directives, so `go install go.etcd.io/etcd/server/v3@v`
// is refused; this wrapper module requires the server at the pinned version and calls its main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
