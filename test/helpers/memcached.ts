/**
 * Real memcached servers for tests: each on a free loopback port, stopped by the test that
 * started it, and killed when the test worker exits whatever happened.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, readFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import type { ExecutionContext } from 'ava'

/** A memcached process started by {@link startMemcached}. */
export interface MemcachedServer {
  readonly host: string
  readonly port: number
  /** `host:port`, as the store's `servers` option takes it. */
  readonly address: string
  /** The running process's id (changes on restart). */
  readonly pid: number
  /** SIGTERM, then SIGKILL if it has not exited within 2 s; resolves once it has exited. */
  stop(): Promise<void>
  /** SIGKILL (a crash); resolves once it has exited. */
  kill(): Promise<void>
  /** Starts the server again on the same port (after stop or kill); its cache is empty. */
  restart(): Promise<void>
  /** SIGSTOP, resolved once the process is stopped: it keeps its sockets but answers nothing (a stalled server). */
  pause(): Promise<void>
  /** SIGCONT after {@link pause}. */
  resume(): void
  /** The server's `stats`, raw: name -> value. */
  stats(): Promise<Record<string, string>>
  /** Sends one raw protocol command (CRLFs included) and resolves with the whole reply. */
  raw(command: string): Promise<string>
}

const HOST = '127.0.0.1'
const READY_MS = 5000
const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

function memcachedBinary(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir, 'memcached')
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {
      // not in this directory
    }
  }
  throw new Error(
    'these tests need a memcached binary on the PATH. Install it: `apt-get install memcached` ' +
      '(Debian/Ubuntu), `brew install memcached` (macOS), `apk add memcached` (Alpine); `npm test` installs it when run as root with apt-get.',
  )
}

/** A port nothing listens on right now (listen on port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

// meta replies too (HD, EN, NF, NS, EX, MN, each a whole reply when it ends the text; VA is followed by its data)
const REPLY_END =
  /(?:^|\n)(?:END|STORED|NOT_STORED|EXISTS|NOT_FOUND|DELETED|TOUCHED|OK|ERROR|(?:CLIENT|SERVER)_ERROR[^\r\n]*|(?:HD|EN|NF|NS|EX|MN)(?: [^\r\n]*)?)\r\n$/

/** Sends a raw command to `port` and resolves with the reply, up to its final status line. */
export function rawCommand(port: number, command: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST)
    let reply = ''
    socket.setEncoding('utf8')
    socket.setTimeout(timeoutMs, () =>
      socket.destroy(new Error(`no reply to ${JSON.stringify(command.slice(0, 40))} from ${HOST}:${port} in ${timeoutMs} ms`)),
    )
    socket.on('error', reject)
    socket.on('data', (chunk: string) => {
      reply += chunk
      if (REPLY_END.test(reply)) {
        socket.destroy()
        resolve(reply)
      }
    })
    socket.write(command)
  })
}

function parseStats(reply: string): Record<string, string> {
  const stats: Record<string, string> = {}
  for (const line of reply.split('\r\n')) {
    const [word, name, ...value] = line.split(' ')
    if (word === 'STAT' && name !== undefined) stats[name] = value.join(' ')
  }
  return stats
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

/** The process state letter from /proc (T = stopped), or undefined where there is no /proc. */
function procState(pid: number | undefined): string | undefined {
  try {
    return /^\d+ \(.*\) (\S) /.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1]
  } catch {
    return undefined
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Starts memcached on `port` and resolves once it answers `stats` with its own pid (so a
 * server another test started on the same port is never mistaken for ours); rejects if the
 * process exits first (e.g. the port was taken meanwhile).
 */
async function spawnOn(port: number, extraArgs: string[]): Promise<ChildProcess> {
  const args = ['-l', HOST, '-p', String(port), '-U', '0', '-m', '64', ...extraArgs]
  if (process.getuid?.() === 0) args.push('-u', 'memcache')
  // Through a shell that leaves a watchdog behind and then becomes memcached (exec: same pid):
  // should this process die without stopping the server (a test run killed at its timeout
  // ends its workers without their hooks), the server follows it within a second.
  const watchdog =
    `p=$$; (while kill -0 ${process.pid} && kill -0 $p; do sleep 1; done; kill -9 $p) </dev/null >/dev/null 2>&1 & ` + 'exec "$0" "$@"'
  const child = spawn('/bin/sh', ['-c', watchdog, memcachedBinary(), ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const deadline = Date.now() + READY_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`memcached on port ${port} exited at start (${child.exitCode ?? child.signalCode}): ${stderr.trim()}`)
    }
    try {
      if (parseStats(await rawCommand(port, 'stats\r\n', 500)).pid === String(child.pid)) return child
    } catch {
      // not listening yet
    }
    await sleep(20)
  }
  child.kill('SIGKILL')
  await exited(child)
  throw new Error(`memcached on port ${port} did not answer within ${READY_MS} ms: ${stderr.trim()}`)
}

/** Starts a memcached process on a free loopback port (or `port`), retrying on a port clash. */
export async function startMemcached(opts: { port?: number; extraArgs?: string[] } = {}): Promise<MemcachedServer> {
  const extraArgs = opts.extraArgs ?? []
  let child: ChildProcess | undefined
  let port = opts.port ?? 0
  for (let attempt = 1; child === undefined; attempt++) {
    if (opts.port === undefined) port = await freePort()
    try {
      child = await spawnOn(port, extraArgs)
    } catch (err) {
      if (attempt >= 5) throw err
      if (opts.port !== undefined) await sleep(100)
    }
  }
  let current: ChildProcess = child
  const signal = async (sig: NodeJS.Signals, waitMs: number) => {
    if (current.exitCode !== null || current.signalCode !== null) return
    current.kill(sig)
    if (sig !== 'SIGKILL') current.kill('SIGCONT') // a paused process acts on other signals only once continued
    const proc = current
    const timer = setTimeout(() => proc.kill('SIGKILL'), waitMs)
    await exited(proc)
    clearTimeout(timer)
  }
  return {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    get pid() {
      return current.pid ?? -1
    },
    stop: () => signal('SIGTERM', 2000),
    kill: () => signal('SIGKILL', 2000),
    async restart() {
      await signal('SIGTERM', 2000)
      for (let attempt = 1; ; attempt++) {
        try {
          current = await spawnOn(port, extraArgs)
          return
        } catch (err) {
          if (attempt >= 10) throw err
          await sleep(100)
        }
      }
    },
    async pause() {
      current.kill('SIGSTOP')
      // a signal takes effect asynchronously: until the process is seen stopped, it may still answer
      if (procState(current.pid) === undefined) return sleep(50)
      for (let i = 0; i < 100 && !/[Tt]/.test(procState(current.pid) ?? 'T'); i++) await sleep(10)
    },
    resume: () => void current.kill('SIGCONT'),
    stats: async () => parseStats(await rawCommand(port, 'stats\r\n')),
    raw: (command) => rawCommand(port, command),
  }
}

/** Starts a memcached server for one test and stops it in the test's teardown. */
export async function useMemcached<C>(t: ExecutionContext<C>, opts?: { port?: number; extraArgs?: string[] }): Promise<MemcachedServer> {
  const server = await startMemcached(opts)
  t.teardown(() => server.stop())
  return server
}
