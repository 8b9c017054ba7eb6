// grafana-check decodes Grafana dashboard JSON files through Grafana's own dashboard model
// (github.com/grafana/grafana-foundation-sdk/go, Apache-2.0) and reports every problem it finds.
//
// What the library checks: its strict decoder (UnmarshalJSONStrict) refuses unknown fields, wrong
// types and missing required fields on the dashboard, its panels, templating variables, gridPos, the
// panel options and fieldConfig.defaults.custom of known panel types, and Prometheus targets; its
// Validate() enforces the schema's bounds (gridPos w in 1..24, x in 0..23, h > 0, ...).
// What this program adds on top, from the library's data: fieldConfig decoded strictly too (the
// library decodes it leniently), panel types among the panel plugins the library knows, targets that
// decode as Prometheus queries, datasource references that name a datasource variable (or a fixed
// uid), variable types among the library's VariableType values, every $variable used defined, and no
// two panels' gridPos rectangles overlapping.
//
// Usage: grafana-check FILE...  Prints one line per problem ("FILE: where: what") and one summary line
// per file; exits 1 if any file has a problem, 2 on usage errors.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Variables Grafana itself defines (not in the SDK, which models dashboards, not the server).
var builtins = map[string]bool{
	"__rate_interval": true, "__interval": true, "__interval_ms": true, "__range": true,
	"__range_s": true, "__range_ms": true, "__from": true, "__to": true, "__dashboard": true,
	"__org": true, "__user": true, "__name": true, "__all_variables": true, "timeFilter": true,
}

var variableTypes = map[dashboard.VariableType]bool{
	dashboard.VariableTypeQuery: true, dashboard.VariableTypeAdhoc: true,
	dashboard.VariableTypeGroupby: true, dashboard.VariableTypeConstant: true,
	dashboard.VariableTypeDatasource: true, dashboard.VariableTypeInterval: true,
	dashboard.VariableTypeTextbox: true, dashboard.VariableTypeCustom: true,
	dashboard.VariableTypeSystem: true, dashboard.VariableTypeSnapshot: true,
	dashboard.VariableTypeSwitch: true,
}

// $name, ${name}, ${name:format} and [[name]], Grafana's variable syntaxes.
var variableUse = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]`)

type problems struct{ list []string }

func (p *problems) add(where, format string, args ...any) {
	p.list = append(p.list, where+": "+fmt.Sprintf(format, args...))
}

// addErr splits the library's joined errors into one problem each.
func (p *problems) addErr(where string, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.TrimSpace(line) != "" {
			p.add(where, "%s", line)
		}
	}
}

func variablesIn(text string) []string {
	var names []string
	for _, m := range variableUse.FindAllStringSubmatch(text, -1) {
		names = append(names, m[1]+m[2]+m[3])
	}
	return names
}

type rect struct {
	title      string
	x, y, w, h uint32
}

func overlap(a, b rect) bool {
	return a.x < b.x+b.w && b.x < a.x+a.w && a.y < b.y+b.h && b.y < a.y+a.h
}

// checkRef: a datasource reference is a Prometheus one whose uid is a fixed uid or names a datasource
// variable of this dashboard.
func checkRef(p *problems, where string, ref *common.DataSourceRef, sources map[string]bool) {
	if ref == nil {
		p.add(where, "no datasource")
		return
	}
	if ref.Type == nil || *ref.Type != "prometheus" {
		p.add(where, "datasource type is %v, not prometheus", ptr(ref.Type))
	}
	if ref.Uid == nil || *ref.Uid == "" {
		p.add(where, "datasource has no uid")
		return
	}
	for _, name := range variablesIn(*ref.Uid) {
		if !sources[name] {
			p.add(where, "datasource uid %q names no datasource variable", *ref.Uid)
		}
	}
}

func ptr(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

func check(path string) ([]string, string) {
	p := &problems{}
	raw, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}, ""
	}
	// Strict decoding, for its errors only: in v0.0.22 the strict decoders of a panel (and of a
	// Prometheus query) return a typed nil error, so PanelOrRowPanel drops every panel it decodes
	// strictly (the errors are still reported). The data comes from the lenient decoder below.
	var strict dashboard.Dashboard
	if err := strict.UnmarshalJSONStrict(raw); err != nil {
		p.addErr("dashboard (strict decode)", err)
	}
	var board dashboard.Dashboard
	if err := json.Unmarshal(raw, &board); err != nil {
		p.addErr("dashboard (decode)", err)
	}
	if err := board.Validate(); err != nil {
		p.addErr("dashboard (schema bounds)", err)
	}
	// The raw panels, for what the library decodes leniently even in strict mode.
	var loose struct {
		Panels []struct {
			FieldConfig json.RawMessage   `json:"fieldConfig"`
			Targets     []json.RawMessage `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &loose); err != nil {
		p.addErr("dashboard", err)
	}

	defined := map[string]bool{}
	sources := map[string]bool{}
	for i, v := range board.Templating.List {
		where := fmt.Sprintf("templating.list[%d] %q", i, v.Name)
		if v.Name == "" {
			p.add(where, "variable has no name")
		}
		if defined[v.Name] {
			p.add(where, "variable defined twice")
		}
		defined[v.Name] = true
		if !variableTypes[v.Type] {
			p.add(where, "type %q is not a Grafana variable type", v.Type)
		}
		if v.Type == dashboard.VariableTypeDatasource {
			sources[v.Name] = true
			if v.Query == nil || v.Query.String == nil || *v.Query.String != "prometheus" {
				p.add(where, "datasource variable does not select prometheus datasources")
			}
		}
	}
	for i, v := range board.Templating.List {
		where := fmt.Sprintf("templating.list[%d] %q", i, v.Name)
		if v.Type == dashboard.VariableTypeQuery {
			checkRef(p, where, v.Datasource, sources)
			if v.Query != nil && v.Query.String != nil {
				for _, name := range variablesIn(*v.Query.String) {
					if !defined[name] && !builtins[name] {
						p.add(where, "query uses undefined variable $%s", name)
					}
				}
			}
		}
	}

	ids := map[uint32]string{}
	var rects []rect
	types := map[string]int{}
	targets := 0
	for i, item := range board.Panels {
		if item.RowPanel != nil {
			types["row"]++
			continue
		}
		panel := item.Panel
		if panel == nil {
			continue
		}
		where := fmt.Sprintf("panels[%d] %q", i, ptr(panel.Title))
		types[panel.Type]++
		if _, known := cog.ConfigForPanelcfgVariant(panel.Type); !known {
			p.add(where, "panel type %q is not a panel plugin the schema knows", panel.Type)
		}
		if i < len(loose.Panels) && loose.Panels[i].FieldConfig != nil {
			var fc dashboard.FieldConfigSource
			if err := fc.UnmarshalJSONStrict(loose.Panels[i].FieldConfig); err != nil {
				p.addErr(where+" fieldConfig (strict decode)", err)
			}
		}
		if panel.Id == nil {
			p.add(where, "panel has no id")
		} else if other, dup := ids[*panel.Id]; dup {
			p.add(where, "panel id %d is also %q's", *panel.Id, other)
		} else {
			ids[*panel.Id] = ptr(panel.Title)
		}
		if panel.Title == nil || *panel.Title == "" {
			p.add(where, "panel has no title")
		}
		checkRef(p, where, panel.Datasource, sources)
		if panel.GridPos == nil {
			p.add(where, "panel has no gridPos")
		} else {
			g := panel.GridPos
			if g.X+g.W > 24 {
				p.add(where, "gridPos x+w = %d, past the 24 columns", g.X+g.W)
			}
			r := rect{ptr(panel.Title), g.X, g.Y, g.W, g.H}
			for _, other := range rects {
				if overlap(r, other) {
					p.add(where, "gridPos overlaps panel %q", other.title)
				}
			}
			rects = append(rects, r)
		}
		if len(panel.Targets) == 0 {
			p.add(where, "panel has no targets")
		}
		refIDs := map[string]bool{}
		for j, target := range panel.Targets {
			twhere := fmt.Sprintf("%s targets[%d]", where, j)
			query, ok := target.(*prometheus.Dataquery)
			if !ok {
				p.add(twhere, "does not decode as a Prometheus query (%T)", target)
				continue
			}
			if i < len(loose.Panels) && j < len(loose.Panels[i].Targets) {
				var exact prometheus.Dataquery
				if err := exact.UnmarshalJSONStrict(loose.Panels[i].Targets[j]); err != nil {
					p.addErr(twhere+" (strict decode as a Prometheus query)", err)
				}
			}
			targets++
			if query.Expr == "" {
				p.add(twhere, "empty expr")
			}
			if query.RefId == nil || refIDs[*query.RefId] {
				p.add(twhere, "refId missing or repeated")
			} else {
				refIDs[*query.RefId] = true
			}
			checkRef(p, twhere, query.Datasource, sources)
			for _, name := range variablesIn(query.Expr) {
				if !defined[name] && !builtins[name] {
					p.add(twhere, "expr uses undefined variable $%s", name)
				}
			}
		}
	}
	kinds := make([]string, 0, len(types))
	for kind, n := range types {
		kinds = append(kinds, fmt.Sprintf("%s %d", kind, n))
	}
	sort.Strings(kinds)
	summary := fmt.Sprintf("%d panels (%s), %d prometheus targets, %d variables",
		len(board.Panels), strings.Join(kinds, ", "), targets, len(board.Templating.List))
	return p.list, summary
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grafana-check FILE...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		list, summary := check(path)
		name := filepath.Base(path)
		for _, problem := range list {
			fmt.Printf("%s: %s\n", name, problem)
		}
		if len(list) > 0 {
			failed = true
			fmt.Printf("%s: FAILED, %d problems; %s\n", name, len(list), summary)
		} else {
			fmt.Printf("%s: ok; %s\n", name, summary)
		}
	}
	if failed {
		os.Exit(1)
	}
}
