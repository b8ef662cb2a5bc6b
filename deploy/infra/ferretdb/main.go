// Command ferretdb runs an embedded FerretDB v1 (MongoDB wire protocol) for local development and
// tests without Docker.
//
// It embeds github.com/FerretDB/FerretDB/ferretdb instead of building cmd/ferretdb, because the
// latter panics at start-up when built from the Go module (its build/version files are generated
// and not part of the module). Embedded FerretDB never starts the telemetry reporter and marks
// telemetry as disabled, so it makes no outbound network calls.
//
// Usage:
//
//	ferretdb -listen 127.0.0.1:27017 -handler postgresql -postgresql-url postgres://postgres@127.0.0.1:54329/ferretdb
//	ferretdb -listen 127.0.0.1:27017 -handler sqlite -sqlite-url file:/abs/dir/
//
// It is built by scripts/infra/install.sh only: the build adds patch/insert_batch_size.go to FerretDB's
// package (in a copy of the module), so that -insert-batch-size can replace the 100 FerretDB fixes.
//
// The PostgreSQL handler is the default: the SQLite handler runs an update's read and write
// without a transaction, so concurrent updates of one document can lose writes (FerretDB #3040).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only when -pprof is given
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	handler := flag.String("handler", "postgresql", "backend handler: postgresql or sqlite")
	pgURL := flag.String("postgresql-url", "postgres://postgres@127.0.0.1:5432/ferretdb", "PostgreSQL URL (postgresql handler)")
	sqliteURL := flag.String("sqlite-url", "", "SQLite directory URI such as file:/abs/dir/ (sqlite handler; the directory must exist)")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn or error")
	pprofAddr := flag.String("pprof", "", "serve Go's net/http/pprof profiles on this address (off when empty), e.g. 127.0.0.1:6060")
	insertBatchSize := flag.Int("insert-batch-size", 100, "documents of an insert command written per SQL statement and transaction "+
		"(FerretDB's own: 100); a batch holding a duplicate _id is inserted again one document per transaction")
	flag.Parse()

	// Above 1,000 a duplicate costs more than a thousand one-document transactions, and each new size
	// of a last, partial batch is a new statement for pgx's cache of 512.
	if *insertBatchSize < 1 || *insertBatchSize > 1000 {
		fail(fmt.Errorf("bad -insert-batch-size %d (want 1 to 1000)", *insertBatchSize))
	}
	// Declared by patch/insert_batch_size.go, which scripts/infra/install.sh adds to FerretDB's package.
	ferretdb.InsertBatchSize = *insertBatchSize

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail(fmt.Errorf("bad -log-level: %w", err))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	cfg := ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   logger,
		Handler:  *handler,
	}
	switch *handler {
	case "postgresql":
		cfg.PostgreSQLURL = *pgURL
	case "sqlite":
		if *sqliteURL == "" {
			fail(errors.New("-sqlite-url is required with -handler sqlite"))
		}
		if !strings.HasSuffix(*sqliteURL, "/") {
			fail(errors.New("-sqlite-url must name a directory and end with /"))
		}
		cfg.SQLiteURL = *sqliteURL
	default:
		fail(fmt.Errorf("unknown -handler %q (want postgresql or sqlite)", *handler))
	}

	if *pprofAddr != "" {
		go func() { logger.Warn("pprof server stopped", "error", http.ListenAndServe(*pprofAddr, nil)) }()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	f, err := ferretdb.New(&cfg)
	if err != nil {
		fail(err)
	}

	logger.Info("ferretdb starting", "listen", *listen, "handler", *handler, "uri", "mongodb://"+*listen+"/")
	if err := f.Run(ctx); err != nil {
		fail(err)
	}
	logger.Info("ferretdb stopped")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ferretdb:", err)
	os.Exit(1)
}
