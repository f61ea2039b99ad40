package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
)

// The attributes an audience may name. Profiles carry attributes of any
// name, and `customer.attributes.teir == 'gold'` type-checks (attributes
// are a map): the typo would match nobody, silently. So a rule's save
// checks the names its audience reads against the catalog of attributes
// (engine.Attributes): the names profiles carry, learned as they are
// written, and those the operator declared (PUT /v1/attributes). A name
// in neither is refused, with the nearest known name as a hint. Rules
// already stored are never refused on load: the check is the save's.

// Attribute types, as the catalog of attributes names them: the JSON
// types of a profile's attribute values (checkAttribute).
const (
	AttrString = "string"
	AttrNumber = "number"
	AttrBool   = "bool"
	AttrList   = "list"
)

// AttributeTypes lists the types an attribute may have.
var AttributeTypes = []string{AttrString, AttrNumber, AttrBool, AttrList}

// AttributeType names the type of an attribute's value ("" for a value
// no profile may hold).
func AttributeType(v any) string {
	switch v.(type) {
	case string:
		return AttrString
	case float64, int, int64:
		return AttrNumber
	case bool:
		return AttrBool
	case []any, []string:
		return AttrList
	}
	return ""
}

// Limits of the declared attributes.
const (
	// MaxDeclaredAttributes bounds how many attributes the operator may
	// declare.
	MaxDeclaredAttributes = 1000
	// MaxAttributeDescriptionBytes bounds a declaration's description.
	MaxAttributeDescriptionBytes = 500
)

// AttributeDecl is an attribute the operator declares: audiences may name
// it even before any profile carries it.
type AttributeDecl struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
}

// CheckAttributeDecls checks a list of declarations, naming every fault
// by its path (attributes[2].name).
func CheckAttributeDecls(decls []AttributeDecl) error {
	var fs faults
	if len(decls) > MaxDeclaredAttributes {
		fs.add("attributes", "at most %d attributes may be declared, not %d", MaxDeclaredAttributes, len(decls))
		return fs.err()
	}
	seen := make(map[string]int, len(decls))
	for i, d := range decls {
		at := fmt.Sprintf("attributes[%d]", i)
		if msg := attributeNameFault(d.Name); msg != "" {
			fs.add(at+".name", "%s", msg)
		} else if j, dup := seen[d.Name]; dup {
			fs.add(at+".name", "the attribute %q is declared twice (attributes[%d] too)", d.Name, j)
		} else {
			seen[d.Name] = i
		}
		if !slices.Contains(AttributeTypes, d.Type) {
			fs.add(at+".type", "type is one of %s", strings.Join(AttributeTypes, ", "))
		}
		if len(d.Description) > MaxAttributeDescriptionBytes {
			fs.add(at+".description", "a description is at most %d characters", MaxAttributeDescriptionBytes)
		}
	}
	return fs.err()
}

// attributeNameFault says what is wrong with an attribute's name, or "":
// as a profile's (1 to MaxAttributeKeyBytes bytes), valid UTF-8 and
// without control characters, since the catalog writes names one a line.
func attributeNameFault(name string) string {
	if name == "" || len(name) > MaxAttributeKeyBytes {
		return fmt.Sprintf("an attribute's name must be 1 to %d characters", MaxAttributeKeyBytes)
	}
	if !LearnableAttribute(name) {
		return "an attribute's name may not hold control characters"
	}
	return ""
}

// LearnableAttribute reports whether the catalog keeps a name: valid
// UTF-8 without control characters (a profile may carry others; they are
// not learned, and an audience naming one is refused).
func LearnableAttribute(name string) bool {
	return utf8.ValidString(name) && !strings.ContainsFunc(name, unicode.IsControl)
}

// attrRef is an attribute an audience names, and where.
type attrRef struct {
	name string
	loc  file.Location
}

// audienceAttributes lists the attributes an audience names by a
// constant: customer.attributes.tier, customer.attributes["tier"] (and
// with ?.), and 'tier' in customer.attributes; a name computed at run
// time cannot be checked. It answers nothing for an audience that does
// not parse (compileAudience says why).
func audienceAttributes(src string) (file.Source, []attrRef) {
	if strings.TrimSpace(src) == "" || len(src) > MaxAudienceBytes {
		return file.Source{}, nil
	}
	tree, err := parser.ParseWithConfig(src, audienceConfig())
	if err != nil {
		return file.Source{}, nil
	}
	v := &attrVisitor{seen: map[string]bool{}}
	ast.Walk(&tree.Node, v)
	return tree.Source, v.refs
}

type attrVisitor struct {
	refs []attrRef
	seen map[string]bool
}

func (v *attrVisitor) add(n *ast.StringNode) {
	if v.seen[n.Value] {
		return
	}
	v.seen[n.Value] = true
	v.refs = append(v.refs, attrRef{name: n.Value, loc: n.Location()})
}

func (v *attrVisitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.MemberNode:
		if s, ok := n.Property.(*ast.StringNode); ok && isAttributes(n.Node) {
			v.add(s)
		}
	case *ast.BinaryNode:
		if s, ok := n.Left.(*ast.StringNode); ok && n.Operator == "in" && isAttributes(n.Right) {
			v.add(s)
		}
	}
}

// isAttributes reports whether a node is customer.attributes (or
// customer?.attributes, customer["attributes"]).
func isAttributes(n ast.Node) bool {
	if c, ok := n.(*ast.ChainNode); ok {
		n = c.Node
	}
	m, ok := n.(*ast.MemberNode)
	if !ok {
		return false
	}
	if s, ok := m.Property.(*ast.StringNode); !ok || s.Value != "attributes" {
		return false
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	return ok && id.Value == "customer"
}

// AudienceAttributes lists the attribute names an audience names by a
// constant, in the order they first appear.
func AudienceAttributes(src string) []string {
	_, refs := audienceAttributes(src)
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.name
	}
	return out
}

// UnknownAttributeFaults names, at "audience", each attribute the audience
// names that is not among known, with the nearest known name as a hint
// ("did you mean tier?") and where it stands in the expression.
func UnknownAttributeFaults(src string, known []string) []Fault {
	source, refs := audienceAttributes(src)
	return unknownAttributeFaults(source, refs, known)
}

func unknownAttributeFaults(source file.Source, refs []attrRef, known []string) []Fault {
	var fs faults
	has := make(map[string]bool, len(known))
	for _, k := range known {
		has[k] = true
	}
	for _, r := range refs {
		if has[r.name] {
			continue
		}
		msg := fmt.Sprintf("no profile has the attribute %q and it is not declared (PUT /v1/attributes)", r.name)
		if near := nearestName(r.name, known); near != "" {
			msg += fmt.Sprintf("; did you mean %s?", near)
		}
		e := (&file.Error{Location: r.loc, Message: msg}).Bind(source)
		fs.addPrecondition("audience", "%s", e.Error())
	}
	return fs
}

// nearestName is the known name nearest to name, within a few edits
// (one for a short name, a third of its length for a longer one), case
// aside, or "". Of names as near, the first in order.
func nearestName(name string, known []string) string {
	r := []rune(strings.ToLower(name))
	limit := max(1, len(r)/3)
	best, bestD := "", limit+1
	for _, k := range known {
		kr := []rune(strings.ToLower(k))
		if len(kr) > len(r)+limit || len(r) > len(kr)+limit {
			continue
		}
		d := editDistance(r, kr)
		if d >= len(r) || d > limit {
			continue
		}
		if d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of two neighbours (teir, tier) each
// count one.
func editDistance(a, b []rune) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// KnownAttributes answers the attribute names an audience may name: those
// profiles carry and those declared.
type KnownAttributes func(ctx context.Context) ([]string, error)

// CheckAttributes makes every save of a rule (PutRule, PutRuleIf, and a
// dry run) check the attributes its audience names against known; a
// catalog without it checks none. Set it before the catalog serves.
func (c *Catalog) CheckAttributes(known KnownAttributes) { c.knownAttrs = known }

// AttributeFaults names each attribute r's audience names by a constant
// that is neither carried by a profile nor declared (precondition faults
// at "audience"); none when the catalog does not check attributes, or the
// audience names none (then nothing is read).
func (c *Catalog) AttributeFaults(ctx context.Context, r *Rule) ([]Fault, error) {
	if c.knownAttrs == nil {
		return nil, nil
	}
	source, refs := audienceAttributes(r.Audience)
	if len(refs) == 0 {
		return nil, nil
	}
	known, err := c.knownAttrs(ctx)
	if err != nil {
		return nil, err
	}
	return unknownAttributeFaults(source, refs, known), nil
}
