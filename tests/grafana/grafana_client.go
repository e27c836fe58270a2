// grafana_client talks to a Postgres server the way Grafana's PostgreSQL data source does, with
// the Go drivers Grafana ships: pgx (Grafana >= 12.4: "-- ping" health check, panels run in
// the simple query protocol through PgConn().Exec) or lib/pq through database/sql (older
// Grafana: db.Ping() sends ";").
//
// It reads a JSON list of {"name", "sql"} from stdin, runs the health check and then every
// query, and prints one JSON object: {"ping": "...", "results": {name: {...}}}. Each result
// holds the column names, the driver's type names, the command tag (pgx) and the rows with
// values decoded by the driver (timestamps as RFC 3339 in UTC), or the error. The pytest
// driver (test_grafana.py) holds the SQL and checks the values.
//
// Built from Debian packages, no module download:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o grafana_client grafana_client.go
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgtype"
	"github.com/jackc/pgx/v4"
	_ "github.com/lib/pq"
)

type query struct {
	Name string `json:"name"`
	SQL  string `json:"sql"`
}

type result struct {
	Columns []string        `json:"columns"`
	Types   []string        `json:"types"`
	Tag     string          `json:"tag,omitempty"`
	Rows    [][]interface{} `json:"rows"`
	Error   string          `json:"error,omitempty"`
}

type output struct {
	Ping    string            `json:"ping"`
	Results map[string]result `json:"results"`
}

func main() {
	driver := flag.String("driver", "pgx", "pgx (Grafana >= 12.4) or pq (older Grafana)")
	dsn := flag.String("dsn", "", "connection string, as Grafana builds it")
	flag.Parse()

	var queries []query
	if err := json.NewDecoder(os.Stdin).Decode(&queries); err != nil {
		fail("reading queries: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var out output
	switch *driver {
	case "pgx":
		out = runPgx(ctx, *dsn, queries)
	case "pq":
		out = runPq(ctx, *dsn, queries)
	default:
		fail("unknown driver %q", *driver)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("writing results: %v", err)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func runPgx(ctx context.Context, dsn string, queries []query) output {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fail("pgx connect: %v", err)
	}
	defer conn.Close(ctx)
	out := output{Results: map[string]result{}}
	// The health check of Grafana >= 12.4 (pgx v5's Ping): "-- ping" in the simple protocol.
	ping, err := conn.PgConn().Exec(ctx, "-- ping").ReadAll()
	switch {
	case err != nil:
		out.Ping = "error: " + err.Error()
	case len(ping) != 0:
		// Postgres answers a comment-only query with EmptyQueryResponse: no result at all.
		out.Ping = fmt.Sprintf("unexpected: %d results", len(ping))
	default:
		out.Ping = "ok"
	}
	info := pgtype.NewConnInfo()
	for _, q := range queries {
		// Panels: conn.PgConn().Exec(ctx, sql).ReadAll(), as Grafana's sql_engine does.
		results, err := conn.PgConn().Exec(ctx, q.SQL).ReadAll()
		if err != nil {
			out.Results[q.Name] = result{Error: err.Error()}
			continue
		}
		var r result
		for _, res := range results {
			if !res.CommandTag.Select() {
				continue
			}
			r.Tag = res.CommandTag.String()
			r.Columns, r.Types = nil, nil
			for _, field := range res.FieldDescriptions {
				r.Columns = append(r.Columns, string(field.Name))
				name := "unknown"
				if dt, ok := info.DataTypeForOID(field.DataTypeOID); ok {
					name = dt.Name
				}
				r.Types = append(r.Types, name)
			}
			for _, raw := range res.Rows {
				row := make([]interface{}, len(raw))
				for i, value := range raw {
					row[i], err = decodePgx(info, res.FieldDescriptions[i].DataTypeOID, res.FieldDescriptions[i].Format, value)
					if err != nil {
						r.Error = err.Error()
					}
				}
				r.Rows = append(r.Rows, row)
			}
		}
		if r.Tag == "" && r.Error == "" {
			r.Error = "no SELECT result (command tag is not SELECT n)"
		}
		out.Results[q.Name] = r
	}
	return out
}

// decodePgx decodes one text (or binary) value the way Grafana's pgx engine scans it.
func decodePgx(info *pgtype.ConnInfo, oid uint32, format int16, raw []byte) (interface{}, error) {
	if raw == nil {
		return nil, nil
	}
	decode := func(v interface {
		DecodeText(*pgtype.ConnInfo, []byte) error
		DecodeBinary(*pgtype.ConnInfo, []byte) error
	}) error {
		if format == 1 {
			return v.DecodeBinary(info, raw)
		}
		return v.DecodeText(info, raw)
	}
	switch oid {
	case pgtype.TimestamptzOID:
		var v pgtype.Timestamptz
		if err := decode(&v); err != nil {
			return nil, fmt.Errorf("timestamptz %q: %w", raw, err)
		}
		return v.Time.UTC().Format(time.RFC3339Nano), nil
	case pgtype.TimestampOID:
		var v pgtype.Timestamp
		if err := decode(&v); err != nil {
			return nil, fmt.Errorf("timestamp %q: %w", raw, err)
		}
		return v.Time.UTC().Format(time.RFC3339Nano), nil
	case pgtype.Float8OID, pgtype.Float4OID, pgtype.NumericOID:
		var v pgtype.Float8
		if oid == pgtype.NumericOID {
			var n pgtype.Numeric
			if err := decode(&n); err != nil {
				return nil, fmt.Errorf("numeric %q: %w", raw, err)
			}
			var f float64
			if err := n.AssignTo(&f); err != nil {
				return nil, err
			}
			return f, nil
		}
		if oid == pgtype.Float4OID {
			var f pgtype.Float4
			if err := decode(&f); err != nil {
				return nil, fmt.Errorf("float4 %q: %w", raw, err)
			}
			return float64(f.Float), nil
		}
		if err := decode(&v); err != nil {
			return nil, fmt.Errorf("float8 %q: %w", raw, err)
		}
		return v.Float, nil
	case pgtype.Int8OID, pgtype.Int4OID, pgtype.Int2OID:
		var v pgtype.Int8
		if err := decode(&v); err != nil {
			return nil, fmt.Errorf("int %q: %w", raw, err)
		}
		return v.Int, nil
	default:
		return string(raw), nil
	}
}

func runPq(ctx context.Context, dsn string, queries []query) output {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		fail("lib/pq open: %v", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	out := output{Results: map[string]result{}}
	// The health check of Grafana < 12.4: database/sql Ping, which lib/pq runs as ";".
	if err := db.PingContext(ctx); err != nil {
		out.Ping = "error: " + err.Error()
	} else {
		out.Ping = "ok"
	}
	for _, q := range queries {
		out.Results[q.Name] = queryPq(ctx, db, q.SQL)
	}
	return out
}

func queryPq(ctx context.Context, db *sql.DB, text string) result {
	rows, err := db.QueryContext(ctx, text)
	if err != nil {
		return result{Error: err.Error()}
	}
	defer rows.Close()
	var r result
	types, err := rows.ColumnTypes()
	if err != nil {
		return result{Error: err.Error()}
	}
	for _, t := range types {
		r.Columns = append(r.Columns, t.Name())
		r.Types = append(r.Types, t.DatabaseTypeName())
	}
	for rows.Next() {
		values := make([]interface{}, len(types))
		pointers := make([]interface{}, len(types))
		for i := range values {
			pointers[i] = &values[i]
		}
		if err := rows.Scan(pointers...); err != nil {
			return result{Error: err.Error()}
		}
		for i, v := range values {
			switch v := v.(type) {
			case time.Time:
				values[i] = v.UTC().Format(time.RFC3339Nano)
			case []byte:
				values[i] = string(v)
			}
		}
		r.Rows = append(r.Rows, values)
	}
	if err := rows.Err(); err != nil {
		r.Error = err.Error()
	}
	return r
}
