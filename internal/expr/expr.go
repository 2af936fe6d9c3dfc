// Package expr compiles and evaluates the CEL expressions playbooks use
// (`when` and `autoApprove.when`), with one variable: `incident`, the Incident
// as Kubernetes serialises it (spec, status, metadata).
package expr

import (
	"fmt"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"k8s.io/apimachinery/pkg/runtime"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// costLimit bounds one evaluation, so a playbook cannot stall the controller.
const costLimit = 1_000_000

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

func environment() (*cel.Env, error) {
	envOnce.Do(func() {
		env, envErr = cel.NewEnv(cel.Variable("incident", cel.DynType))
	})
	return env, envErr
}

// Program is a compiled boolean expression.
type Program struct {
	source string
	prg    cel.Program
}

// Compile checks that source is a boolean CEL expression over `incident`.
// The error is written for the playbook's author.
func Compile(source string) (*Program, error) {
	e, err := environment()
	if err != nil {
		return nil, err
	}
	prg, err := CompileIn(e, source, cel.BoolType)
	if err != nil {
		return nil, err
	}
	return &Program{source: source, prg: prg}, nil
}

// CompileIn compiles source in env to a program whose result has type want
// (or is dynamic, known only when evaluated), bounded by the cost limit
// every Riposte expression has. The error is written for the author.
func CompileIn(env *cel.Env, source string, want *cel.Type) (cel.Program, error) {
	ast, iss := env.Compile(source)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%q does not compile: %w", source, iss.Err())
	}
	if ast.OutputType() != want && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("%q must return a %s, not %s", source, want, ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit))
	if err != nil {
		return nil, fmt.Errorf("%q: %w", source, err)
	}
	return prg, nil
}

// Eval runs the expression against an incident. A missing field is an error
// in CEL; callers treat an error as "does not hold" and report it.
func (p *Program) Eval(incident map[string]any) (bool, error) {
	out, _, err := p.prg.Eval(map[string]any{"incident": incident})
	if err != nil {
		return false, fmt.Errorf("%q: %w", p.source, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%q returned %T, not a boolean", p.source, out.Value())
	}
	return b, nil
}

// IncidentObject turns an Incident into the value expressions see.
func IncidentObject(inc *riposte.Incident) (map[string]any, error) {
	return runtime.DefaultUnstructuredConverter.ToUnstructured(inc)
}

// Cache holds compiled programs by source, so each expression compiles once.
type Cache struct {
	mu       sync.Mutex
	programs map[string]cacheEntry
}

type cacheEntry struct {
	prg *Program
	err error
}

// Get compiles source, or returns the compiled program from an earlier call.
func (c *Cache) Get(source string) (*Program, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.programs[source]; ok {
		return e.prg, e.err
	}
	if c.programs == nil {
		c.programs = map[string]cacheEntry{}
	}
	prg, err := Compile(source)
	c.programs[source] = cacheEntry{prg, err}
	return prg, err
}

// templateCache holds compiled template expressions by source.
var templateCache sync.Map // string -> cel.Program or error

// Render fills a template: text in which each {{ expr }} is a CEL
// expression over `incident` whose value is written in its place. Text
// without {{ is returned as it is.
func Render(template string, incident map[string]any) (string, error) {
	var out strings.Builder
	rest := template
	for {
		open := strings.Index(rest, "{{")
		if open < 0 {
			out.WriteString(rest)
			return out.String(), nil
		}
		end := strings.Index(rest[open:], "}}")
		if end < 0 {
			return "", fmt.Errorf("template %q: {{ without }}", template)
		}
		out.WriteString(rest[:open])
		source := strings.TrimSpace(rest[open+2 : open+end])
		v, err := evalValue(source, incident)
		if err != nil {
			return "", fmt.Errorf("template %q: %w", template, err)
		}
		out.WriteString(v)
		rest = rest[open+end+2:]
	}
}

// CheckTemplate compiles every expression of a template without evaluating
// it, so a playbook's author learns of a mistake when the playbook is applied.
func CheckTemplate(template string) error {
	_, err := Render(template, nil)
	return err
}

func evalValue(source string, incident map[string]any) (string, error) {
	cached, ok := templateCache.Load(source)
	if !ok {
		e, err := environment()
		if err != nil {
			return "", err
		}
		var compiled any
		ast, iss := e.Compile(source)
		if iss.Err() != nil {
			compiled = fmt.Errorf("%q does not compile: %w", source, iss.Err())
		} else if prg, err := e.Program(ast, cel.CostLimit(costLimit)); err != nil {
			compiled = fmt.Errorf("%q: %w", source, err)
		} else {
			compiled = prg
		}
		cached, _ = templateCache.LoadOrStore(source, compiled)
	}
	prg, ok := cached.(cel.Program)
	if !ok {
		return "", cached.(error)
	}
	if incident == nil {
		return "", nil // only checking that it compiles
	}
	out, _, err := prg.Eval(map[string]any{"incident": incident})
	if err != nil {
		return "", fmt.Errorf("%q: %w", source, err)
	}
	switch v := out.Value().(type) {
	case string:
		return v, nil
	case bool, int64, uint64, float64:
		return fmt.Sprint(v), nil
	default:
		return "", fmt.Errorf("%q returned %T; a template part must be a string, number or boolean", source, v)
	}
}
