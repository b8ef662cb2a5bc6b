// Package ferretdb: this file is not built on its own. scripts/infra/install.sh adds it to FerretDB's
// own `ferretdb` package (in a copy of the module it builds with) and points the embedded handler's
// insert batch size at InsertBatchSize, which FerretDB 1.24 fixes at 100 in ferretdb.New.
package ferretdb

// InsertBatchSize is how many documents of one `insert` command FerretDB writes per SQL statement and
// transaction. When a batch holds a duplicate `_id`, FerretDB inserts that batch again one document
// per transaction, so a larger batch costs more for scattered duplicates (scripts/infra/README.md).
var InsertBatchSize = 100
