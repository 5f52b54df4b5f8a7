/**
 * A real twemproxy (Debian's `nutcracker`) in front of real memcached servers, on free loopback
 * ports, for tests of the text-protocol path: twemproxy passes get/gets/set/add/replace/cas/
 * delete/touch and closes the connection on anything else (meta commands, `stats`,
 * `lru_crawler`, a negative exptime).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { ExecutionContext } from 'ava'
import { freePort, rawCommand, type MemcachedServer } from './memcached.js'

/** A nutcracker process started by {@link startTwemproxy}. */
export interface Twemproxy {
  readonly host: string
  readonly port: number
  /** `host:port`, as the store's `servers` option takes it. */
  readonly address: string
  /** SIGTERM, then SIGKILL after 2 s; removes its config directory; resolves once it has exited. */
  stop(): Promise<void>
}

const HOST = '127.0.0.1'
const READY_MS = 5000
const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/** The nutcracker binary: on the PATH, or in /usr/sbin where Debian puts it (not on a user's PATH). */
function nutcrackerBinary(): string {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin']
  for (const dir of dirs) {
    const file = path.join(dir, 'nutcracker')
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {
      // not in this directory
    }
  }
  throw new Error(
    'these tests need twemproxy (the `nutcracker` binary). Install it: `apt-get install nutcracker` (Debian/Ubuntu), ' +
      '`brew install twemproxy` (macOS); `npm test` installs it when run as root with apt-get.',
  )
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

/**
 * Starts nutcracker on a free loopback port in front of `servers` (one pool, ketama over fnv1a_64,
 * no host ejection) and resolves once a `get` through it is answered.
 */
export async function startTwemproxy(servers: MemcachedServer[]): Promise<Twemproxy> {
  const binary = nutcrackerBinary()
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tied-session-twemproxy-'))
  const [port, statsPort] = [await freePort(), await freePort()]
  const config = [
    'sessions:',
    `  listen: ${HOST}:${port}`,
    '  hash: fnv1a_64',
    '  distribution: ketama',
    '  timeout: 5000',
    '  auto_eject_hosts: false',
    '  servers:',
    ...servers.map((s) => `    - ${s.address}:1`),
    '',
  ].join('\n')
  const file = path.join(dir, 'nutcracker.yml')
  await fs.writeFile(file, config)
  // Through a shell that leaves a watchdog behind and then becomes nutcracker (exec: same pid), as
  // the memcached helper does: should the test worker die without its hooks, the proxy follows it.
  const watchdog =
    `p=$$; (while kill -0 ${process.pid} && kill -0 $p; do sleep 1; done; kill -9 $p) </dev/null >/dev/null 2>&1 & ` + 'exec "$0" "$@"'
  const args = ['-c', file, '-s', String(statsPort), '-a', HOST, '-o', path.join(dir, 'nutcracker.log')]
  const child = spawn('/bin/sh', ['-c', watchdog, binary, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
      await exited(child)
      clearTimeout(timer)
    }
    await fs.rm(dir, { recursive: true, force: true })
  }
  const deadline = Date.now() + READY_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await fs.readFile(path.join(dir, 'nutcracker.log'), 'utf8').catch(() => '')
      await stop()
      throw new Error(`nutcracker on port ${port} exited at start (${child.exitCode ?? child.signalCode}): ${stderr.trim()} ${log.trim()}`)
    }
    try {
      if ((await rawCommand(port, 'get tied-session-ready\r\n', 500)) === 'END\r\n') {
        return { host: HOST, port, address: `${HOST}:${port}`, stop }
      }
    } catch {
      // not listening yet
    }
    await sleep(20)
  }
  await stop()
  throw new Error(`nutcracker on port ${port} did not answer within ${READY_MS} ms: ${stderr.trim()}`)
}

/** Starts twemproxy for one test and stops it in the test's teardown. */
export async function useTwemproxy<C>(t: ExecutionContext<C>, servers: MemcachedServer[]): Promise<Twemproxy> {
  const proxy = await startTwemproxy(servers)
  t.teardown(() => proxy.stop())
  return proxy
}
