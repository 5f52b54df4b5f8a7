/**
 * The command line: one `node:util` parseArgs over every option, then the store options merged
 * with their TIED_SESSION_* environment variables (a flag wins over its variable).
 */
import { parseArgs } from 'node:util'
import { normalizeServer } from '../stores/address.js'
import { UsageError } from './errors.js'
import { COMMANDS } from './help.js'

/** Every option of every command; which command takes which is checked in {@link parseCommandLine}. */
const OPTIONS = {
  dir: { type: 'string' },
  servers: { type: 'string' },
  local: { type: 'string' },
  namespace: { type: 'string' },
  principal: { type: 'string' },
  expires: { type: 'string' },
  timeout: { type: 'string' },
  where: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const

/** The store options and the environment variable each may come from. */
export const STORE_ENV = {
  dir: 'TIED_SESSION_DIR',
  servers: 'TIED_SESSION_SERVERS',
  local: 'TIED_SESSION_LOCAL',
  namespace: 'TIED_SESSION_NAMESPACE',
  principal: 'TIED_SESSION_PRINCIPAL',
  expires: 'TIED_SESSION_EXPIRES',
  timeout: 'TIED_SESSION_TIMEOUT',
} as const

/** Options only some commands take. */
const COMMAND_OPTIONS: Record<string, readonly string[]> = { where: ['list'] }

/** What every store configuration has. */
interface CommonConfig {
  namespace: string
  principal: string
  /** Seconds a session written now lives (0 = never), from --expires or TIED_SESSION_EXPIRES. */
  expires: number | undefined
  /** True when --expires was given on the command line: set and unset then restart the lifetime. */
  expiresFlag: boolean
  /** Milliseconds a memcached request may take, from --timeout or TIED_SESSION_TIMEOUT. */
  timeout: number | undefined
}

/** Where sessions are: the file store in a directory, or memcached servers. */
export type StoreConfig =
  ({ kind: 'file'; dir: string | undefined } & CommonConfig) | ({ kind: 'memcached'; servers: string[]; local: string[] } & CommonConfig)

/** A parsed command line. */
export interface CommandLine {
  /** The command, or undefined when none was given. */
  command: string | undefined
  /** The command's arguments. */
  args: string[]
  where: string[]
  json: boolean
  debug: boolean
  help: boolean
  version: boolean
  /** Resolves the store options (flags, then environment); throws UsageError when they are wrong. */
  store(): StoreConfig
}

/** Parses `argv` (without node and the script); throws UsageError on an unknown or malformed option. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): CommandLine {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    // parseArgs' messages are one clear sentence, e.g. "Unknown option '--x'"
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''), commandIn(argv))
  }
  const { values, positionals } = parsed
  const [command, ...args] = positionals
  for (const [option, commands] of Object.entries(COMMAND_OPTIONS)) {
    if (values[option as keyof typeof values] !== undefined && (command === undefined || !commands.includes(command))) {
      throw new UsageError(`--${option} is an option of ${commands.join(', ')} only`, command)
    }
  }
  return {
    command,
    args,
    where: values.where ?? [],
    json: values.json === true,
    debug: values.debug === true,
    help: values.help === true,
    version: values.version === true,
    store: () => storeConfig(values, env, command),
  }
}

/** The first word of argv that names a command, for the usage text of an error. */
function commandIn(argv: string[]): string | undefined {
  return argv.find((arg) => Object.hasOwn(COMMANDS, arg))
}

type Values = Partial<Record<keyof typeof STORE_ENV, string>>

function storeConfig(flags: Values, env: NodeJS.ProcessEnv, command: string | undefined): StoreConfig {
  const fromEnv = (name: keyof typeof STORE_ENV) => {
    const value = env[STORE_ENV[name]]
    return value === undefined || value.trim() === '' ? undefined : value
  }
  // A store flag on the command line overrides the environment's choice of store, whichever kind.
  const flagged = flags.dir !== undefined || flags.servers !== undefined
  const pick = (name: 'dir' | 'servers') => (flagged ? flags[name] : fromEnv(name))
  const dir = pick('dir')
  const servers = pick('servers')
  const local = flags.local ?? (flagged && flags.servers === undefined ? undefined : fromEnv('local'))
  const source = (name: keyof typeof STORE_ENV) => (flags[name] !== undefined ? `--${name}` : STORE_ENV[name])
  if (dir !== undefined && servers !== undefined) {
    throw new UsageError(`${source('dir')} and ${source('servers')} name two stores; give one`, command)
  }
  const namespace = flags.namespace ?? fromEnv('namespace') ?? ''
  // as tieSession checks it: list and sweep read keys without going through tieSession
  if (!/^[\x21-\x7e]{0,64}$/.test(namespace)) {
    throw new UsageError(
      `${source('namespace')} must be at most 64 printable ASCII characters, no spaces; got ${JSON.stringify(namespace)}`,
      command,
    )
  }
  const principal = flags.principal ?? fromEnv('principal') ?? 'uid'
  if (principal === '') throw new UsageError(`${source('principal')} must name a session field, e.g. uid`, command)
  const expiresText = flags.expires ?? fromEnv('expires')
  let expires: number | undefined
  if (expiresText !== undefined) {
    if (!/^\d{1,10}$/.test(expiresText.trim())) {
      throw new UsageError(`${source('expires')} takes whole seconds (0 = never), got ${JSON.stringify(expiresText)}`, command)
    }
    expires = Number(expiresText.trim())
  }
  const timeoutText = flags.timeout ?? fromEnv('timeout')
  let timeout: number | undefined
  if (timeoutText !== undefined) {
    timeout = Number(timeoutText.trim())
    if (!/^\d{1,7}$/.test(timeoutText.trim()) || timeout < 1) {
      throw new UsageError(`${source('timeout')} takes milliseconds, 1 to 9999999, got ${JSON.stringify(timeoutText)}`, command)
    }
  }
  const common = { namespace, principal, expires, expiresFlag: flags.expires !== undefined, timeout }
  if (servers === undefined) {
    if (local !== undefined) throw new UsageError(`${source('local')} needs --servers (the principal memcached servers)`, command)
    if (dir === '') throw new UsageError('--dir must name a directory', command)
    return { kind: 'file', dir, ...common }
  }
  return {
    kind: 'memcached',
    servers: serverList(servers, source('servers'), command),
    local: local === undefined ? [] : serverList(local, source('local'), command),
    ...common,
  }
}

/** `h:p,h:p` as normalized `host:port` strings (port 11211 when left out). */
function serverList(text: string, source: string, command: string | undefined): string[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
  if (list.length === 0) throw new UsageError(`${source} must name at least one host:port`, command)
  return list.map((server) => {
    const address = normalizeServer(server)
    if (address === undefined)
      throw new UsageError(`${source} takes host:port ([address]:port for IPv6), got ${JSON.stringify(server)}`, command)
    return address
  })
}

/** The store options of `config` as flags, so that a child process opens the same store. */
export function storeFlags(config: StoreConfig, dir?: string): string[] {
  // `--name=value`: a value that is empty or starts with "-" is still read as the value
  const flags =
    config.kind === 'file'
      ? dir === undefined
        ? []
        : [`--dir=${dir}`]
      : [`--servers=${config.servers.join(',')}`, ...(config.local.length > 0 ? [`--local=${config.local.join(',')}`] : [])]
  flags.push(`--namespace=${config.namespace}`, `--principal=${config.principal}`)
  if (config.expires !== undefined) flags.push(`--expires=${config.expires}`)
  if (config.timeout !== undefined) flags.push(`--timeout=${config.timeout}`)
  return flags
}
