# Turns the README's table of configuration keys (between <!-- keys:begin -->
# and <!-- keys:end -->) into man(7) paragraphs, for patroxy.yml(5): one
# source for both. Markdown `code` becomes bold; roff's specials are escaped.
function roff(s) {
    gsub(/\\/, "\\e", s)
    gsub(/-/, "\\-", s)
    # `code` spans: bold
    while (match(s, /`[^`]*`/)) {
        s = substr(s, 1, RSTART - 1) "\\fB" substr(s, RSTART + 1, RLENGTH - 2) "\\fR" substr(s, RSTART + RLENGTH)
    }
    gsub(/\*/, "", s)
    sub(/^[.']/, "\\\\\\&&", s)
    return s
}
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
/<!-- keys:begin -->/ { inside = 1; rows = 0; last = "\001"; next }
/<!-- keys:end -->/ { inside = 0; next }
inside && /^\|/ {
    n = split($0, f, "|")
    key = trim(f[2]); def = trim(f[3]); range = trim(f[4]); what = trim(f[5])
    if (key == "key" || key ~ /^-+$/) { next }
    gsub(/`/, "", key)
    section = key; sub(/\..*/, "", section)
    if (section == key) { section = "" }
    if (section != last) {
        print ".SS " (section == "" ? "Top level" : roff(section))
        last = section
    }
    print ".TP"
    print "\\fB" roff(key) "\\fR"
    print roff(what) "."
    print ".br"
    print "Default: " roff(def) ". Values: " roff(range) "."
    rows++
}
END { if (rows == 0) { print "keys-to-man: no key rows found" > "/dev/stderr"; exit 1 } }
