/**
 * The help texts: `tied-session --help` and `tied-session <command> --help`, with examples.
 */
import { EXIT_CODES } from './errors.js'

/** One command as its help shows it. */
interface CommandHelp {
  synopsis: string
  summary: string
  details: string
  examples: string[]
}

/** Every command, in the order the help lists them. */
export const COMMANDS: Record<string, CommandHelp> = {
  new: {
    synopsis: 'new [path=value ...]',
    summary: 'create a session, print its id',
    details:
      'Creates a session with a new id, sets the values given (see `set`) and prints the id.\n' +
      'Setting the principal field (uid) indexes the session under that user, for find and logout.',
    examples: ['tied-session new', 'tied-session new uid=dwho cart.items.0.sku=42 lang=fr', 'id=$(tied-session new uid=dwho)'],
  },
  show: {
    synopsis: 'show <id>',
    summary: 'print a session (a path/value table, or --json)',
    details: 'Prints every value of the session, one dotted path per line. Exit 1 when there is no such session.',
    examples: [
      'tied-session show 3f2a9c0e8b7d4f61a5c2e9d0b8a7f6e5',
      'tied-session show 3f2a9c0e8b7d4f61a5c2e9d0b8a7f6e5 --json | jq .cart',
    ],
  },
  set: {
    synopsis: 'set <id> path=value ...',
    summary: 'change values; nested paths like cart.items.0.sku=42',
    details:
      'Sets each path to its value in one atomic change (compare-and-swap, retried on a concurrent writer).\n' +
      'A value that parses as JSON is JSON (42, true, null, {"a":1}, "\\"42\\""), anything else is a string.\n' +
      'Missing objects on the way are created (an array before a numeric segment); an array index may\n' +
      'be at most its length (which appends). The session keeps the lifetime it had left, unless --expires\n' +
      'is given on the command line (then it lives that many seconds from now).',
    examples: [
      'tied-session set 3f2a9c0e8b7d4f61a5c2e9d0b8a7f6e5 cart.items.0.sku=42 cart.items.0.qty=2',
      'tied-session set 3f2a9c0e8b7d4f61a5c2e9d0b8a7f6e5 name=Dupont zip=\'"75001"\' prefs=\'{"lang":"fr"}\'',
    ],
  },
  unset: {
    synopsis: 'unset <id> path ...',
    summary: 'remove values',
    details:
      'Removes each path in one atomic change; an array element is spliced out. A path that is not there is reported, not an error.\n' +
      'The session keeps the lifetime it had left, unless --expires is given on the command line.',
    examples: ['tied-session unset 3f2a9c0e8b7d4f61a5c2e9d0b8a7f6e5 cart.items.1 prefs.lang'],
  },
  destroy: {
    synopsis: 'destroy <id> ...',
    summary: 'destroy sessions',
    details:
      "Destroys each session and takes it out of its user's index. Exit 1 when one of them was not found (the others are destroyed).",
    examples: [
      'tied-session destroy 3f2a9c0e8b7d4f61a5c2e9d0b8a7f6e5',
      'tied-session destroy 3f2a9c0e8b7d4f61a5c2e9d0b8a7f6e5 9b1c7d2e4f6a8b0c1d3e5f7a9b2c4d0e',
    ],
  },
  find: {
    synopsis: 'find <user>',
    summary: "the user's sessions: id, expiry, size",
    details:
      'Looks the user up in the principal index (md5 of the user id, as Apache::Session::Memorycached keeps it)\n' +
      'and prints each live session: its id, when it expires (as the index recorded it) and its size in bytes.\n' +
      "Exit 1 when the user has no session. A listed key that holds another client's item shows as not readable.",
    examples: ['tied-session find dwho', 'tied-session --servers 10.0.0.15:11211 find dwho --json'],
  },
  logout: {
    synopsis: 'logout <user>',
    summary: "destroy all of the user's sessions, print how many",
    details:
      'Single logout: destroys every session of the user the principal index lists, and prints how many.\n' +
      'Processes that hold one tied get ERR_SESSION_NOT_FOUND at their next save. Exit 1 when the user had no session.',
    examples: ['tied-session logout dwho', 'TIED_SESSION_SERVERS=10.0.0.15:11211 tied-session logout dwho'],
  },
  list: {
    synopsis: 'list [--where path=value ...]',
    summary: 'every session (file store; memcached >= 1.4.31)',
    details:
      'Lists every session: id, user, size and top-level keys. The file store walks its directory; memcached is\n' +
      'walked with `lru_crawler metadump hash` (`all` before memcached 1.6.9; memcached >= 1.4.31, not started with\n' +
      '-X or -o no_lru_crawler).\n' +
      'Index keys of the principal index are not sessions and are left out. Items of other applications in the\n' +
      'namespace are counted as "not a tied-session session" and left as they are.\n' +
      '--where path=value keeps the sessions whose value at path is value (JSON, or the text); repeat it to\n' +
      'require several.',
    examples: [
      'tied-session list',
      'tied-session list --where uid=dwho --where cart.items.0.sku=42',
      'tied-session --servers 127.0.0.1:11211 list --json',
    ],
  },
  sweep: {
    synopsis: 'sweep',
    summary: 'delete expired sessions (file store)',
    details:
      'Deletes the files of expired keys (sessions and index keys) from the file store and prints how many,\n' +
      'with a progress bar on a terminal. memcached expires its items itself: there is nothing to sweep.',
    examples: ['tied-session sweep', 'tied-session --dir /var/lib/myapp/sessions sweep'],
  },
  ping: {
    synopsis: 'ping',
    summary: 'check every configured server',
    details:
      'For every memcached server, principal and local: reachable?, version, the latency of a set/get/delete\n' +
      'round trip, item count and memory use. On the file store: a round trip in its directory.\n' +
      'Exit 3 when a server is down.',
    examples: ['tied-session --servers 10.0.0.15:11211 --local 127.0.0.1:11211 ping', 'tied-session ping --json'],
  },
  demo: {
    synopsis: 'demo',
    summary: 'the quick-start demonstration',
    details:
      'Creates a session for a user, writes nested data, re-reads it by id in a second process, finds it by\n' +
      'user id and logs the user out, saying what each step does. Runs on the file store (no server needed),\n' +
      'or on --servers.',
    examples: ['tied-session demo', 'tied-session --servers 127.0.0.1:11211 demo'],
  },
  help: {
    synopsis: 'help [command]',
    summary: "this text, or a command's",
    details: 'Prints the help of the tool, or of one command (as `tied-session <command> --help`).',
    examples: ['tied-session help set'],
  },
}

const STORE_OPTIONS = `Store options (each also from the environment; a flag wins):
  --dir DIR           the file store's directory (the default store)       TIED_SESSION_DIR
                      default: <os tmpdir>/tied-session-<uid>
  --servers H:P,...   principal memcached servers: every write goes there   TIED_SESSION_SERVERS
  --local H:P,...     local memcached servers: reads try them first         TIED_SESSION_LOCAL
  --namespace NS      prefix of every key (default: none)                   TIED_SESSION_NAMESPACE
  --principal FIELD   the session field naming the user (default: uid)      TIED_SESSION_PRINCIPAL
  --expires S         seconds a session written now lives, 0 = never        TIED_SESSION_EXPIRES
                      (default: 86400; set and unset keep the lifetime left unless --expires is given)
  --timeout MS        milliseconds a memcached request may take             TIED_SESSION_TIMEOUT
                      (default: 1000)`

const COMMON_OPTIONS = `Options:
  --json              one JSON document on stdout for every outcome; a failure is
                      {"error": {"code", "message", "exit"}} (with what was done, if anything)
  --debug             print stack traces of errors
  -h, --help          this help; tied-session <command> --help for a command's
  -V, --version       print the version`

/** The tool's help. */
export function usage(): string {
  const width = Math.max(...Object.values(COMMANDS).map((c) => c.synopsis.length))
  const commands = Object.values(COMMANDS)
    .map((c) => `  ${c.synopsis.padEnd(width)}  ${c.summary}`)
    .join('\n')
  return `Usage: tied-session [store options] <command> [args] [--json] [--debug]

Inspect and manage tied-session sessions from a shell.

Commands:
${commands}

${STORE_OPTIONS}

${COMMON_OPTIONS}

${EXIT_CODES}

Examples:
  tied-session demo
  tied-session new uid=dwho cart.items.0.sku=42
  tied-session --servers 10.0.0.15:11211 find dwho
  TIED_SESSION_SERVERS=10.0.0.15:11211 tied-session logout dwho
`
}

/** One command's help, or the tool's for an unknown command. */
export function commandUsage(command: string | undefined): string {
  const help = command === undefined ? undefined : COMMANDS[command]
  if (help === undefined) return usage()
  return `Usage: tied-session [store options] ${help.synopsis} [--json]

${help.summary[0]!.toUpperCase()}${help.summary.slice(1)}.
${help.details}

${command === 'help' ? COMMON_OPTIONS : `${STORE_OPTIONS}\n\n${COMMON_OPTIONS}`}

${EXIT_CODES}

Examples:
${help.examples.map((e) => `  ${e}`).join('\n')}
`
}
