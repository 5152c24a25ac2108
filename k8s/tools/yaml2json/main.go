// yaml2json turns a YAML stream (one or more documents) into one JSON array of documents.
//
// Why it exists: the schema converter and the tests are Python stdlib-only, which has no YAML
// parser, and the inputs (CRDs from Maven/Go artifacts, kustomize output) are YAML. Each document
// is converted with sigs.k8s.io/yaml, the same YAML->JSON path kubectl and the API server use, so
// YAML 1.1 quirks (on/yes booleans, duplicate keys) behave as they would in a real cluster.
// Duplicate keys are an error here, as with `kubeconform -strict`.
//
// Usage: yaml2json < in.yaml > out.json      (empty documents are dropped)
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "yaml2json:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	// The v3 decoder only splits the stream into documents; each one is re-encoded and then
	// converted by sigs.k8s.io/yaml so the scalar rules are the Kubernetes ones.
	dec := yamlv3.NewDecoder(in)
	docs := []json.RawMessage{}
	for i := 0; ; i++ {
		var node yamlv3.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		raw, err := yamlv3.Marshal(&node)
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue
		}
		docs = append(docs, js)
	}
	enc := json.NewEncoder(out)
	return enc.Encode(docs)
}
