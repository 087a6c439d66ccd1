/*
 * lb_waf_rules.c: the "basic" rule set. Every pattern reads text the
 * normaliser has made lower case, percent-decoded and, for paths,
 * collapsed (lb_waf_engine.h). Patterns avoid nested unbounded repeats, and
 * bounded gaps ({0,64}) keep a near-miss from scanning far: a field full of
 * almost-matches costs about one pass.
 *
 * `needs` says what a field must hold for the rule to be able to match —
 * any of the characters before the first space, or any of the words or
 * pairs after it (a word: a run of [a-z0-9_] that starts with it; a pair:
 * two characters in a row, "/." also matching a leading ".") — so that a
 * field is matched only against the rules it could break. Every needs
 * line is a claim about its pattern: keep it true when the pattern
 * changes (test_waf.c checks it on random fields against the patterns).
 *
 * docs/waf.md lists every rule with what it catches and a false positive
 * it is known to have; keep the two in step (the unit test checks that
 * every rule has both).
 */
#include "lb_waf_engine.h"

/* what SQL accepts as a space: blanks, or an inline comment */
#define SP   "(?:\\s|/\\*[^*]{0,64}\\*/)"

/* commands a shell injection runs first */
#define CMDS "(?:cat|ls|id|whoami|uname|wget|curl|nc|ncat|netcat|bash|sh|zsh|python[23]?" \
             "|perl|ruby|php|ping|nslookup|rm|chmod|chown|echo|sleep|telnet|powershell" \
             "|cmd(?:\\.exe)?)"

#define ALL   LB_WAF_IN_ALL
#define VALS  (LB_WAF_IN_ARGS | LB_WAF_IN_COOKIES | LB_WAF_IN_HEADERS)

const lb_waf_rule_t  lb_waf_basic_rules[] = {

    /* SQL injection ------------------------------------------------------- */

    { "sqli-1", ALL,
      "'\"`",
      "['\"`]\\s*\\)*\\s*(?:or|and|xor|\\|\\||&&)\\s*\\(*\\s*['\"`]?[\\w.-]{0,32}['\"`]?\\s*"
      "(?:=|<>|!=|<=|>=|<|>|like\\b|is\\b|in\\s*\\()",
      "a quote closed, then a tautology: ' or '1'='1, \" or \"\"=\", ') or (1 like 1",
      "prose quoting two words around a comparison: say 'yes' or 'no' = maybe" },

    { "sqli-2", ALL,
      "'\"` or and",
      "\\b(?:or|and)\\s+(\\d{1,10})\\s*(?:=|<=|>=|like\\b)\\s*\\g{-1}\\b"
      "|\\b(?:or|and)\\s+\\d{1,10}\\s*[<>]=?\\s*\\d{1,10}\\s*(?:--|#|/\\*)"
      "|['\"`]\\s*(?:or|and)\\s+(?:true|false)\\b\\s*(?:--|#|/\\*|;|$)",
      "a numeric or boolean tautology: 1 or 1=1, 1 or 2>1--, ' or true--",
      "arithmetic written in words: \"x and 2 = 2\"" },

    { "sqli-3", ALL,
      " union",
      "\\bunion" SP "*+(?:all" SP "++|distinct" SP "++)?\\(?" SP "*+select\\b",
      "UNION SELECT, with comments or ALL/DISTINCT between the words",
      "text about labour history: \"trade union select committee\"" },

    { "sqli-4", ALL,
      ";",
      ";\\s*(?:(?:drop|truncate|alter|create)\\s+(?:table|database|schema|user|view|index)\\b"
      "|delete\\s+from\\b|insert\\s+into\\b|update\\s+[\\w.`\"\\[\\]]{1,64}\\s+set\\b"
      "|exec(?:ute)?\\s+\\w|shutdown\\b|declare\\s+@)",
      "a stacked query after a semicolon: ; drop table users, ; delete from t",
      "a sentence with a semicolon before \"delete from\": \"undo; delete from the list\"" },

    { "sqli-5", ALL,
      "'\"`)*",
      "['\"`)]\\s*(?:--|#|/\\*)|/\\*!\\d{0,6}|\\b(?:or|and|select|union|from|where)"
      "/\\*[^*]{0,64}\\*/",
      "comment tricks: a quote or parenthesis closed then --, # or /*; MySQL /*!...*/;"
      " keywords glued to comments",
      "a quoted phrase followed by a dash pair in a search: \"hello\" -- world" },

    { "sqli-6", ALL,
      "( waitfor into",
      "\\b(?:sleep|benchmark|pg_sleep|load_file|extractvalue|updatexml"
      "|dbms_pipe\\.receive_message|utl_inaddr\\.get_host_address)\\s*\\("
      "|\\bwaitfor\\s+delay\\b|\\binto\\s+(?:out|dump)file\\b",
      "time-based and file functions: sleep(5), benchmark(...), waitfor delay, into outfile",
      "a film title searched with its year: sleep (2020)" },

    { "sqli-7", ALL,
      "@ information_schema mysql sys sysobjects syscolumns pg_catalog sqlite_master all_tables",
      "\\binformation_schema\\b|\\b(?:mysql\\.user|sys\\.objects|sysobjects|syscolumns"
      "|pg_catalog|sqlite_master|all_tables)\\b|@@(?:version|datadir|hostname|basedir)\\b",
      "probes of the database catalogue and server variables",
      "a documentation search for \"information_schema\"" },

    { "sqli-8", ALL,
      "'\"`",
      "['\"`]\\s*\\)*\\s*(?:and|or|\\|\\||union|;)\\s*\\(*\\s*select\\b",
      "a subquery after a closed quote: ' and (select ...), '; select",
      "a quoted word followed by \"or select\": \"red\" or select a colour" },

    { "sqli-9", ALL,
      "(",
      "\\b(?:char|chr|nchar)\\s*\\(\\s*\\d{1,3}\\s*(?:,\\s*\\d{1,3}\\s*){2,}\\)"
      "|\\bconcat(?:_ws)?\\s*\\([^)]{0,64}(?:0x[0-9a-f]{2,}|@@\\w|select\\b)",
      "strings built from codes to dodge quotes: char(97,100,109), concat(0x3a, ...)",
      "a spreadsheet formula in a query: char(65, 66, 67)" },

    { "sqli-10", ALL,
      " exec",
      "\\bexec(?:ute)?\\s+(?:master\\.\\.)?(?:xp|sp)_\\w+",
      "SQL Server extended procedures: exec xp_cmdshell",
      "a forum post about SQL Server administration quoting \"exec sp_who\"" },

    { "sqli-11", ALL,
      "#*= --",
      "\\border\\s+by\\s+\\d{1,3}\\s*(?:--|#|/\\*)|\\bhaving\\s+\\d+\\s*=\\s*\\d+",
      "column-count probing: order by 5--, having 1=1",
      "a support question pasting a query: \"order by 2 -- is it slow?\"" },

    { "sqli-12", ALL,
      "'\"`",
      "['\"`]\\s*;\\s*(?:--|#|$)|['\"`]\\s*\\+\\s*\\(?\\s*select\\b",
      "a quote closed and the statement ended: '; --",
      "a quoted value ending a list in prose: the word \"done\"; --" },

    /* Cross-site scripting ------------------------------------------------ */

    { "xss-1", ALL,
      "<",
      "<\\s*/?\\s*script\\b",
      "script tags, opening or closing, with blanks inside the brackets",
      "a code question mentioning a <script> tag" },

    { "xss-2", ALL,
      "=",
      "(?:<[^>]{0,256}|[\"'`\\s/])on(?:abort|activate|animation\\w{0,16}|before\\w{0,16}"
      "|blur|change|click|contextmenu|copy|cut|dblclick|drag\\w{0,8}|drop|error|focus\\w{0,8}"
      "|hashchange|input|invalid|key\\w{0,8}|load\\w{0,8}|message|mouse\\w{0,8}|paste"
      "|pointer\\w{0,16}|reset|resize|scroll|search|select\\w{0,8}|show|submit|toggle"
      "|touch\\w{0,8}|transition\\w{0,16}|unload|wheel)\\s*=",
      "event handler attributes: <img onerror=...>, \" onmouseover=\"...",
      "a search for DOM documentation: \"the onload= attribute\"" },

    { "xss-3", ALL,
      ":",
      "(?:^|[=(\"'`<]\\s*)(?:javascript|vbscript|livescript)\\s*:"
      "|\\bdata\\s*:\\s*text/html\\b",
      "script URLs where a URL is expected: javascript:, vbscript:, data:text/html",
      "a search that starts with a language name and a colon: \"javascript: the good parts\"" },

    { "xss-4", ALL,
      "<",
      "<\\s*(?:iframe|frame|frameset|object|embed|applet|meta|base|link|style|svg|math"
      "|form|isindex|template|marquee)\\b",
      "tags that load or run content: iframe, object, embed, svg, style, base, meta",
      "a markdown comment quoting <style> or <svg> markup" },

    { "xss-5", ALL,
      "( document window string",
      "\\bdocument\\s*\\.\\s*(?:cookie|domain|write(?:ln)?)\\b"
      "|\\bwindow\\s*\\.\\s*(?:location|open)\\b|\\bstring\\s*\\.\\s*fromcharcode\\b"
      "|\\b(?:eval|settimeout|setinterval)\\s*\\(\\s*['\"`a-z]",
      "DOM sinks and evaluators: document.cookie, window.location, eval('...')",
      "a JavaScript tutorial search: \"how does document.cookie work\"" },

    { "xss-6", ALL,
      ":=",
      ":\\s*expression\\s*\\(|-moz-binding\\s*:|\\bbehavior\\s*:\\s*url\\s*\\("
      "|\\b(?:srcdoc|formaction|xlink:href)\\s*=",
      "CSS expressions and bindings; attributes that carry documents or targets",
      "a CSS question pasting \"width: expression(...)\" from an old stylesheet" },

    /* Path traversal ------------------------------------------------------ */

    { "trav-1", LB_WAF_IN_PATH | LB_WAF_IN_ARGS | LB_WAF_IN_COOKIES,
      " ..",
      "(?:^|[/\\\\=])\\.\\.(?:[/\\\\]|$)",
      "a parent directory step, in any encoding the normaliser decodes (%2e%2e%2f, ..%255c)",
      "a relative link passed as a parameter: ?next=../account" },

    { "trav-2", LB_WAF_IN_PATH | LB_WAF_IN_ARGS | LB_WAF_IN_COOKIES,
      " etc proc windows boot",
      "(?:^|/)(?:etc/(?:passwd|shadow|group|hosts)|proc/self/|windows/(?:win\\.ini|system32)"
      "|boot\\.ini)\\b",
      "well-known system files: /etc/passwd, /proc/self/environ, win.ini",
      "an article path such as /etc/hosts-explained" },

    { "trav-3", LB_WAF_IN_PATH,
      " /.",
      "(?:^|/)\\.(?:git|svn|hg|env|htaccess|htpasswd|ssh|aws)(?:/|$)",
      "probes of hidden files and repositories: /.git/config, /.env",
      "a site that really serves a file named .env" },

    /* Command and header injection ------------------------------------------ */

    { "cmd-1", VALS | LB_WAF_IN_PATH,
      ";&|\n$",
      "(?:[;&|\\n]|\\$\\()\\s*(?:/(?:usr/)?bin/)?" CMDS "(?:\\s|$|[;|&`)])",
      "a command after a shell separator or in $( ): ; cat /etc/passwd, | id, && wget, $(whoami)",
      "a product name with a pipe: \"black | cat t-shirt\"" },

    { "cmd-2", VALS,
      "`",
      "`\\s*" CMDS "\\b[^`]{0,64}`",
      "a command in backticks: `id`, `uname -a`",
      "a markdown snippet with an inline command: `ls -la`" },

    { "cmd-3", ALL,
      "$",
      "\\$\\{\\s*(?:jndi|env|sys|java|lower|upper|date|main|ctx|::-)"
      "|\\$\\{ifs\\}|\\$ifs\\b",
      "lookups a logging library or a shell expands: ${jndi:ldap://...}, ${IFS}",
      "a template language in a search: \"${env.HOME} in Jenkins\"" },

    { "cmd-4", ALL,
      "(",
      "\\(\\s*\\)\\s*\\{[^}]{0,64};\\s*\\}",
      "a shell function definition (Shellshock): () { :; };",
      "a code search for an empty function: \"() { return; }\"" },

    { "cmd-5", VALS,
      " bin nc bash",
      "/bin/(?:ba|z|da|k)?sh\\b|\\bnc(?:at)?\\s+-[a-z]{0,8}e\\b|\\bbash\\s+-[ci]\\b",
      "shells and reverse-shell invocations: /bin/sh, nc -e, bash -i",
      "a question about \"#!/bin/sh\" in a shell script" },

    { "hdr-1", LB_WAF_IN_PATH | LB_WAF_IN_ARGS | LB_WAF_IN_COOKIES,
      "\r\n",
      "[\\r\\n][ \\t]*+[\\w-]{1,64}[ \\t]*+:",
      "a line break followed by a header name (response splitting): %0d%0aSet-Cookie:",
      "a multi-line form field sent by GET whose second line starts with \"Note:\"" },

    { "hdr-2", LB_WAF_IN_PATH,
      "\r\n",
      "[\\r\\n]",
      "any line break in the path, which no link carries",
      "none known: browsers encode line breaks in paths they send" },
};

const size_t  lb_waf_nbasic = sizeof(lb_waf_basic_rules) / sizeof(lb_waf_basic_rules[0]);

const lb_waf_rule_t  lb_waf_rule_nul = {
    "enc-1", ALL, NULL, NULL, "a NUL byte once decoded (%00), which truncates strings in C and PHP",
    "a binary token sent percent-encoded in a query" };

const lb_waf_rule_t  lb_waf_rule_overlong = {
    "enc-2", ALL, NULL, NULL, "overlong UTF-8 (%c0%ae for '.'), which sneaks characters past filters",
    "none known: no valid text contains it" };

const lb_waf_rule_t  lb_waf_rule_limit = {
    "waf-limit", ALL, NULL, NULL, "a field whose scan hit PCRE2's match limits",
    "none known with the basic rules: their patterns stay within the limits" };
