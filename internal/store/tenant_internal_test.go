package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStatementsCarryTheTenant checks that no code of the store reads its
// connection but store.go's as and noTenant: every statement is sent with
// its tenant, or knowingly without one. A new statement written as
// s.db.QueryRow(...) fails here rather than in production, where row-level
// security would hide every row from it.
func TestStatementsCarryTheTenant(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"New": true, "WithDB": true, "as": true, "noTenant": true}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || (name == "store.go" && allowed[fn.Name.Name]) {
				continue
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "db" {
					if id, ok := sel.X.(*ast.Ident); ok && isStore(fn, id.Name) {
						t.Errorf("%s: %s reads the Store's connection: send statements through s.as(tenantID), or s.noTenant() for those that touch no tenant's rows",
							fset.Position(sel.Pos()), fn.Name.Name)
					}
				}
				return true
			})
		}
	}
}

// isStore reports whether name is fn's receiver of type *Store.
func isStore(fn *ast.FuncDecl, name string) bool {
	if fn.Recv == nil || len(fn.Recv.List) == 0 || len(fn.Recv.List[0].Names) == 0 {
		return false
	}
	star, ok := fn.Recv.List[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	typ, ok := star.X.(*ast.Ident)
	return ok && typ.Name == "Store" && fn.Recv.List[0].Names[0].Name == name
}
