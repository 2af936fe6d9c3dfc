package cli

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/riposte-dev/riposte/internal/record"
)

// sinkFlags name a record sink on the command line, as the manager's
// --record-* flags do.
type sinkFlags struct {
	dir     string
	cluster string
	s3      record.S3Options
}

func (f *sinkFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "dir", "", "the record directory (the manager's --record-dir, or a copy of it)")
	cmd.Flags().StringVar(&f.s3.Bucket, "s3-bucket", "", "the record bucket (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
	cmd.Flags().StringVar(&f.s3.Endpoint, "s3-endpoint", "", "an S3-compatible API's URL; empty is AWS's")
	cmd.Flags().StringVar(&f.s3.Region, "s3-region", "us-east-1", "the bucket's region")
	cmd.Flags().StringVar(&f.s3.Prefix, "s3-prefix", "", "the cluster's folder in the bucket (the manager's --record-s3-prefix); empty is --cluster-name, or \"default\" (the manager's default --cluster-name)")
	cmd.Flags().StringVar(&f.cluster, "cluster-name", "", "the cluster whose chain this must be (the manager's --cluster-name): a record of another cluster is a fault; empty takes the first record's")
	cmd.Flags().BoolVar(&f.s3.PathStyle, "s3-path-style", false, "address the bucket in the URL path")
	_ = cmd.MarkFlagDirname("dir")
}

func (f *sinkFlags) sink() (record.Sink, error) {
	switch {
	case f.dir != "" && f.s3.Bucket != "":
		return nil, errors.New("--dir and --s3-bucket: read one sink at a time")
	case f.dir != "":
		if _, err := os.Stat(f.dir); err != nil {
			return nil, fmt.Errorf("--dir: %w", err)
		}
		return record.Dir{Path: f.dir}, nil
	case f.s3.Bucket != "":
		opts := f.s3
		if opts.Prefix == "" {
			// The manager's own default: its records are under its --cluster-name.
			opts.Prefix = f.cluster
			if opts.Prefix == "" {
				opts.Prefix = "default"
			}
		}
		return record.NewS3(opts)
	}
	return nil, errors.New("say where the records are: --dir PATH or --s3-bucket NAME")
}

func (o *options) verifyCommand() *cobra.Command {
	var sf sinkFlags
	var keyFiles []string
	var expectHead, output string
	var allowEmpty bool
	cmd := &cobra.Command{
		Use:   "verify (--dir PATH | --s3-bucket NAME) [--cluster-name NAME] [--public-key FILE]... [--expect-head SEQUENCE[:HASH]] [--allow-empty] [-o json]",
		Short: "Check that the record trail is whole: every signature, every link, no record missing, moved or edited",
		Long: `Reads every record in a sink, with no cluster needed, and checks each one's
hash and ed25519 signature, its place in the chain and its link to the record
before it. Each fault is reported at the record it is found: Edited (content
changed), Forged (changed and rehashed, or signed without the key),
UntrustedKey, RetiredKey (signed by a key after another replaced it), Moved
(renamed or reordered), Missing (removed), Broken (a link
that does not hold), Forked, Truncated, Unreadable, Foreign (another cluster's
record in this chain) and Empty (no record at all: the wrong folder, or every
record removed; --allow-empty when nothing was decided yet). Exits 1 if any is
found.

Trust the key you hold: --public-key is the public half of the manager's
signing key, kept outside the cluster when Riposte was installed:
  kubectl get secret -n riposte-system riposte-record-signing-key \
    -o jsonpath='{.data.ed25519\.key}' | base64 -d | openssl pkey -pubout
Without it, the keys stored beside the records are used, which proves only
that the records agree with each other, not who wrote them. After a key
rotation, pass the old public key too: each record is checked with the key
that signed it.

Records after the last one left can only be missed if you name a head they
must reach: --expect-head takes a sequence (and hash) from an Incident's
status.record or the riposte_record_head_sequence metric.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sink, err := sf.sink()
			if err != nil {
				return err
			}
			opts := record.VerifyOptions{Cluster: sf.cluster, AllowEmpty: allowEmpty}
			if expectHead != "" {
				head, err := parseLink(expectHead)
				if err != nil {
					return fmt.Errorf("--expect-head: %w", err)
				}
				opts.ExpectHead = &head
			}
			var trustedFrom string
			if opts.Trusted, trustedFrom, err = trustedKeys(cmd, sink, keyFiles); err != nil {
				return err
			}
			rep, err := record.Verify(cmd.Context(), sink, opts)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(o.streams.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			case "":
				printVerify(o.streams.Out, rep, trustedFrom)
			default:
				return fmt.Errorf("-o %s: want json, or nothing for a table", output)
			}
			if !rep.OK() {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	sf.bind(cmd)
	cmd.Flags().StringArrayVar(&keyFiles, "public-key", nil, "a trusted public key (PEM), repeatable")
	cmd.Flags().StringVar(&expectHead, "expect-head", "", "a record the chain must reach: SEQUENCE or SEQUENCE:sha256:HEX")
	cmd.Flags().StringVarP(&output, "output", "o", "", "json for the report as JSON")
	cmd.Flags().BoolVar(&allowEmpty, "allow-empty", false, "a sink with no record passes (nothing decided yet)")
	_ = cmd.MarkFlagFilename("public-key", "pem")
	return cmd
}

// trustedKeys are the public keys records are checked with: the files
// given, or else the keys stored beside the records, and which it was.
func trustedKeys(cmd *cobra.Command, sink record.Sink, files []string) (map[string]ed25519.PublicKey, string, error) {
	if len(files) > 0 {
		var pems [][]byte
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, "", fmt.Errorf("--public-key: %w", err)
			}
			pems = append(pems, data)
		}
		keys, err := record.TrustedKeys(pems...)
		if err != nil {
			return nil, "", fmt.Errorf("--public-key: %w", err)
		}
		return keys, "the keys given", nil
	}
	stored, err := sink.Keys(cmd.Context())
	if err != nil {
		return nil, "", err
	}
	var pems [][]byte
	for _, p := range stored {
		pems = append(pems, p)
	}
	keys, err := record.TrustedKeys(pems...)
	return keys, "the keys stored beside the records (pass --public-key to check against the key you hold)", err
}

func parseLink(s string) (record.Link, error) {
	seq, hash, _ := strings.Cut(s, ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil || n < 1 {
		return record.Link{}, fmt.Errorf("%q: want a sequence from 1, then optionally :sha256:HEX", s)
	}
	if hash != "" && !strings.HasPrefix(hash, "sha256:") {
		return record.Link{}, fmt.Errorf("%q: the hash is sha256:HEX", s)
	}
	return record.Link{Sequence: n, Hash: hash}, nil
}

func printVerify(out io.Writer, rep record.Report, trustedFrom string) {
	if rep.OK() {
		fmt.Fprintf(out, "%s: %d records%s, the chain is whole: every signature verifies with %s, and every record follows the one before.\n", rep.Sink, rep.Records, ofCluster(rep.Cluster), trustedFrom)
		if rep.Head.Sequence > 0 {
			fmt.Fprintf(out, "Head: record %d, %s\n", rep.Head.Sequence, rep.Head.Hash)
		}
		if rep.Duplicates > 0 {
			fmt.Fprintf(out, "%d records repeat an earlier one (written again after a restart; records are written at least once); each is counted once.\n", rep.Duplicates)
		}
		return
	}
	fmt.Fprintf(out, "%s: %d records%s, %d problems (signatures checked with %s):\n\n", rep.Sink, rep.Records, ofCluster(rep.Cluster), len(rep.Problems), trustedFrom)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RECORD\tPROBLEM\tFILE\tDETAIL")
	for _, p := range rep.Problems {
		seq := "-"
		if p.Sequence > 0 {
			seq = strconv.FormatInt(p.Sequence, 10)
		}
		name := p.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", seq, p.Kind, name, p.Message)
	}
	_ = w.Flush()
}

func ofCluster(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" of cluster %q", name)
}
