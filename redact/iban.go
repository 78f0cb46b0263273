package redact

// ibanClass is the bytes IBANs are written with (in capitals, in groups
// separated by spaces or not).
var ibanClass = newClass(" ", "AZ09")

// ibanLengths is the length of the IBANs of each country that has them
// (the SWIFT IBAN registry).
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
	"JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
	"MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
	"NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
	"SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// findIBANs finds IBANs: two capitals naming a country, two check digits
// and the account number, as many characters as the country's IBANs have,
// written together or in groups separated by single spaces, whose mod-97
// check holds.
func findIBANs(text string, add addFunc) {
	runs(text, ibanClass, func(start, end int) {
		if end-start < 15 {
			return
		}
		for i := start; i+4 <= end; i++ {
			if isUpper(text[i]) && isUpper(text[i+1]) && isDigit(text[i+2]) && isDigit(text[i+3]) &&
				(i == 0 || !isWordByte(text[i-1])) {
				if e, ok := ibanAt(text, i, end); ok {
					add(KindIBAN, rankIBAN, i, e)
					i = e
				}
			}
		}
	})
}

// ibanAt reads the IBAN that may start at text[start], within a run ending
// at end, and returns where it ends.
func ibanAt(text string, start, end int) (int, bool) {
	length, ok := ibanLengths[text[start:start+2]]
	if !ok {
		return 0, false
	}
	iban := make([]byte, 0, length)
	i := start
	for i < end && len(iban) < length {
		if text[i] == ' ' {
			if i+1 == end || text[i+1] == ' ' || text[i-1] == ' ' {
				return 0, false
			}
		} else {
			iban = append(iban, text[i])
		}
		i++
	}
	if len(iban) < length || i < len(text) && isWordByte(text[i]) {
		return 0, false
	}
	return i, mod97(iban) == 1
}

// mod97 returns the ISO 7064 mod-97 remainder of an IBAN: its first four
// characters moved to the end, letters read as 10 to 35.
func mod97(iban []byte) int {
	r := 0
	for k := range iban {
		c := iban[(k+4)%len(iban)]
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	return r
}
