package rules

import (
	"fmt"
	"math"
	"text/template"
	"time"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// templateHelpers are the functions templates may call, in the language
// of the text being rendered and the customer's time zone:
//
//	{{distance .distance_m}}            80 m, 1,2 km (de) / 1.2 km (en)
//	bis {{clock .coupon.expires_at}}    bis 11:30 Uhr (de), until 11:30 AM (en-US)
//	{{default "Kaffee" .customer.attributes.favorite_drink}}
func templateHelpers(tag language.Tag, loc *time.Location) template.FuncMap {
	p := message.NewPrinter(tag)
	base, _ := tag.Base()
	region, _ := tag.Region()
	return template.FuncMap{
		"distance": func(v any) string {
			m, ok := toFloat(v)
			if !ok {
				return fmt.Sprint(v)
			}
			if m < 1000 {
				return p.Sprintf("%d m", int(math.Round(m)))
			}
			return p.Sprintf("%.1f km", m/1000)
		},
		"clock": func(v any) string {
			t, ok := toTime(v)
			if !ok {
				return fmt.Sprint(v)
			}
			t = t.In(loc)
			switch {
			case base.String() == "de":
				return t.Format("15:04") + " Uhr"
			case base.String() == "en" && (region.String() == "US" || region.String() == "ZZ"):
				return t.Format("3:04 PM")
			}
			return t.Format("15:04")
		},
		"default": func(fallback, v any) any {
			switch x := v.(type) {
			case nil:
				return fallback
			case string:
				if x == "" {
					return fallback
				}
			}
			return v
		},
	}
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func toTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case time.Time:
		return x, true
	case string:
		t, err := time.Parse(time.RFC3339, x)
		return t, err == nil
	}
	return time.Time{}, false
}
