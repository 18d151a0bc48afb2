// The real local-kms (github.com/nsmithuk/local-kms, a server speaking the AWS KMS API)
// for the tests of encryption.kek.aws_kms, bound to 127.0.0.1 only. local-kms's own
// main listens on every interface; this launcher runs the same request handler and
// database on a loopback listener instead, and prints "ready <port>" once it serves.
//
//	local-kms-loopback DATA_DIR
//
// KMS_REGION (default eu-west-1) and KMS_ACCOUNT_ID (default 111122223333) name the
// region and account in the ARNs of the keys it creates.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	kms "github.com/nsmithuk/local-kms/src"
	"github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
)

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: local-kms-loopback DATA_DIR")
		os.Exit(2)
	}
	dir, err := filepath.Abs(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad data directory:", err)
		os.Exit(2)
	}
	config.AWSAccountId = env("KMS_ACCOUNT_ID", "111122223333")
	config.AWSRegion = env("KMS_REGION", "eu-west-1")
	config.DatabasePath = dir
	database := data.NewDatabase(dir)
	defer database.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot listen on 127.0.0.1:", err)
		os.Exit(1)
	}
	fmt.Printf("ready %d\n", ln.Addr().(*net.TCPAddr).Port)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kms.HandleRequest(w, r, database)
	})
	if err := http.Serve(ln, handler); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}
