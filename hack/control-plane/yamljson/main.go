// Command yamljson prints, one JSON document per line, what kubectl sends to the API server for a YAML or
// JSON manifest: it reads documents the way kubectl's resource builder does (apimachinery's
// NewYAMLOrJSONDecoder into a RawExtension, which converts YAML 1.1 with sigs.k8s.io/yaml), drops empty and
// null documents, then decodes each into unstructured data (numbers become int64 or float64) and encodes it
// again. Phalanx's loader must read every file the same way; tests/cluster/test_yaml_kubectl.py compares them.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const usage = `usage: yamljson [FILE]

Reads a YAML or JSON manifest from FILE (or standard input) and writes, one line per document, the JSON that
kubectl would send for it. Exits 1 with the decoder's error on standard error when kubectl would refuse the file.
`

// kubectlBufferSize is how far kubectl's stream visitor looks for a leading '{' to choose JSON.
const kubectlBufferSize = 4096

func convert(in io.Reader, out io.Writer) error {
	decoder := utilyaml.NewYAMLOrJSONDecoder(in, kubectlBufferSize)
	for {
		ext := runtime.RawExtension{}
		if err := decoder.Decode(&ext); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		raw := bytes.TrimSpace(ext.Raw)
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			continue
		}
		var object interface{}
		if err := utiljson.Unmarshal(raw, &object); err != nil {
			return err
		}
		encoded, err := json.Marshal(object)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(out, "%s\n", encoded); err != nil {
			return err
		}
	}
}

func main() {
	flag.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	flag.Parse()
	var in io.Reader = os.Stdin
	switch flag.NArg() {
	case 0:
	case 1:
		file, err := os.Open(flag.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer file.Close()
		in = file
	default:
		flag.Usage()
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	err := convert(in, out)
	if flushErr := out.Flush(); err == nil {
		err = flushErr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
