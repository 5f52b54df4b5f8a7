/**
 * The TIED_SESSION_* environment variables: defaults for the options a call does not give, read
 * by the library as by the `tied-session` command, so that an admin script and the command on
 * one host agree without repeating the configuration. An explicit option always wins.
 */
import { normalizeServer } from './stores/address.js'

/** Each variable and the option it is the default of. */
export const ENVIRONMENT = {
  servers: 'TIED_SESSION_SERVERS',
  local: 'TIED_SESSION_LOCAL',
  dir: 'TIED_SESSION_DIR',
  namespace: 'TIED_SESSION_NAMESPACE',
  principal: 'TIED_SESSION_PRINCIPAL',
  expires: 'TIED_SESSION_EXPIRES',
  timeout: 'TIED_SESSION_TIMEOUT',
} as const

/** What the environment says, checked; a variable that is unset or blank is absent. */
export interface EnvironmentDefaults {
  /** TIED_SESSION_SERVERS: principal memcached servers, `h:p,h:p`. */
  servers?: string[]
  /** TIED_SESSION_LOCAL: local memcached servers, `h:p,h:p` (with servers only). */
  local?: string[]
  /** TIED_SESSION_DIR: the file store's directory. */
  dir?: string
  namespace?: string
  principal?: string
  /** TIED_SESSION_EXPIRES: seconds, 0 = never. */
  expires?: number
  /** TIED_SESSION_TIMEOUT: milliseconds a memcached request may take (the `requestTimeout` option). */
  requestTimeout?: number
}

function invalid(name: string, expected: string, value: string): TypeError {
  return new TypeError(`tied-session: environment variable ${name} must be ${expected}, got ${JSON.stringify(value)}`)
}

function serverList(name: string, text: string): string[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
  const addresses = list.map((server) => normalizeServer(server))
  if (list.length === 0 || addresses.some((a) => a === undefined)) throw invalid(name, 'host:port[,host:port...]', text)
  return addresses as string[]
}

/** Reads and checks the TIED_SESSION_* variables of `env`; a malformed one is a TypeError naming it. */
export function environmentDefaults(env: NodeJS.ProcessEnv = process.env): EnvironmentDefaults {
  const read = (name: string) => {
    const value = env[name]
    return value === undefined || value.trim() === '' ? undefined : value.trim()
  }
  const found: EnvironmentDefaults = {}
  const servers = read(ENVIRONMENT.servers)
  if (servers !== undefined) found.servers = serverList(ENVIRONMENT.servers, servers)
  const local = read(ENVIRONMENT.local)
  if (local !== undefined) found.local = serverList(ENVIRONMENT.local, local)
  const dir = read(ENVIRONMENT.dir)
  if (dir !== undefined) found.dir = dir
  const namespace = read(ENVIRONMENT.namespace)
  if (namespace !== undefined) found.namespace = namespace
  const principal = read(ENVIRONMENT.principal)
  if (principal !== undefined) found.principal = principal
  const expires = read(ENVIRONMENT.expires)
  if (expires !== undefined) {
    if (!/^\d{1,10}$/.test(expires)) throw invalid(ENVIRONMENT.expires, 'whole seconds (0 = never)', expires)
    found.expires = Number(expires)
  }
  const timeout = read(ENVIRONMENT.timeout)
  if (timeout !== undefined) {
    if (!/^\d{1,7}$/.test(timeout) || Number(timeout) < 1) throw invalid(ENVIRONMENT.timeout, 'milliseconds, 1 to 9999999', timeout)
    found.requestTimeout = Number(timeout)
  }
  return found
}

let cached: EnvironmentDefaults | undefined

/**
 * The defaults of this process's environment, read at the first call and kept (a read costs
 * microseconds, a tie should not), until {@link forgetEnvironment}: closeStores() calls it.
 */
export function currentEnvironment(): EnvironmentDefaults {
  return (cached ??= environmentDefaults())
}

/** Makes the next {@link currentEnvironment} read process.env again. */
export function forgetEnvironment(): void {
  cached = undefined
}
