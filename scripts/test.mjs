#!/usr/bin/env node
// npm test: make sure memcached is there (install it when we are root with apt-get), then run
// ava and end with one line "N passed, N failed" that CI reads.
import { spawn, spawnSync } from 'node:child_process'

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

if (!have('memcached')) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  if (root && have('apt-get')) {
    console.log('memcached is missing: installing it with apt-get')
    const r = spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached'], {
      stdio: 'inherit',
    })
    if (r.status !== 0) process.exit(r.status ?? 1)
  } else {
    console.error(
      'tied-session tests need a memcached binary on the PATH.\n' +
        'Install it: sudo apt-get install memcached (Debian/Ubuntu), brew install memcached (macOS), apk add memcached (Alpine).',
    )
    process.exit(1)
  }
}

// the SSO demo's browser test (test/sso-browser.test.ts) drives Debian's Chromium: installed as
// root when missing, as memcached is; elsewhere that one test says how to install it
if (!have('chromium') && !have('chromium-browser') && process.env.CHROMIUM_PATH === undefined) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  if (root && have('apt-get')) {
    console.log('chromium is missing: installing it with apt-get')
    const r = spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'], {
      stdio: 'inherit',
    })
    if (r.status !== 0) process.exit(r.status ?? 1)
  }
}

// The twemproxy tests (test/stores/twemproxy.test.ts) run Debian's nutcracker in front of memcached:
// installed as root when missing, as memcached is; elsewhere those tests fail saying how to install it.
// Debian puts it in /usr/sbin, which a user's PATH may leave out.
if (!have('nutcracker') && !have('/usr/sbin/nutcracker')) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  if (root && have('apt-get')) {
    console.log('nutcracker (twemproxy) is missing: installing it with apt-get')
    const r = spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nutcracker'], {
      stdio: 'inherit',
    })
    if (r.status !== 0) process.exit(r.status ?? 1)
  }
}

// The Perl interop tests run real Perl: Cache::Memcached, JSON and Apache::Session's JSON serializer
// (Storable, Digest::MD5 and JSON::PP come with perl itself).
const PERL_PACKAGES = 'libcache-memcached-perl libapache-session-perl libapache-session-browseable-perl libjson-perl'
const havePerl = () =>
  spawnSync('perl', ['-MCache::Memcached', '-MJSON', '-MApache::Session::Serialize::JSON', '-e', '1'], { stdio: 'ignore' }).status === 0
if (!havePerl()) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  if (root && have('apt-get')) {
    console.log('Perl modules for the interop tests are missing: installing them with apt-get')
    const r = spawnSync('sh', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${PERL_PACKAGES}`], {
      stdio: 'inherit',
    })
    if (r.status !== 0) process.exit(r.status ?? 1)
  } else {
    console.error(
      'tied-session tests need perl with Cache::Memcached, JSON and Apache::Session (the Perl interop tests).\n' +
        `Install them: sudo apt-get install ${PERL_PACKAGES} (Debian/Ubuntu), or cpanm Cache::Memcached JSON Apache::Session Apache::Session::Browseable.`,
    )
    process.exit(1)
  }
}

const args = process.argv.slice(2)

// With no file arguments (the whole suite): the type check and the lint come first, as one check each.
let prechecks = 0
if (args.length === 0) {
  for (const [name, cmd, cmdArgs] of [
    ['typecheck', process.execPath, ['node_modules/typescript/bin/tsc', '--noEmit', '-p', 'tsconfig.json']],
    ['lint', process.execPath, ['node_modules/eslint/bin/eslint.js', 'src', 'test', 'bench', 'scripts', 'examples']],
  ]) {
    const r = spawnSync(cmd, cmdArgs, { stdio: 'inherit' })
    if (r.status !== 0) {
      console.error(`${name} failed`)
      console.log('0 passed, 1 failed')
      process.exit(1)
    }
    console.log(`  ✔ ${name}`)
    prechecks++
  }
}
const child = spawn(process.execPath, ['node_modules/ava/entrypoints/cli.mjs', ...args], {
  stdio: ['ignore', 'pipe', 'pipe'],
  env: { ...process.env, FORCE_COLOR: process.env.FORCE_COLOR ?? (process.stdout.isTTY ? '1' : '0') },
})
let out = ''
child.stdout.on('data', (d) => {
  out += d
  process.stdout.write(d)
})
child.stderr.on('data', (d) => {
  out += d
  process.stderr.write(d)
})
child.on('close', (code) => {
  // eslint-disable-next-line no-control-regex
  const plain = out.replace(/\u001b\[[0-9;]*m/g, '')
  // ava prints one line per test: ✔ passed, ✘ failed (its closing counts leave out the passed
  // ones when some failed); uncaught exceptions and unhandled rejections count as failures too
  const lines = plain.split('\n')
  const passed = prechecks + lines.filter((l) => /^\s*✔/.test(l)).length
  const count = (re) => Number(plain.match(re)?.[1] ?? 0)
  const failed = lines.filter((l) => /^\s*✘/.test(l)).length + count(/(\d+) uncaught exceptions?/) + count(/(\d+) unhandled rejections?/)
  const bad = code !== 0 && failed === 0 ? 1 : failed
  console.log(`${passed} passed, ${bad} failed`)
  process.exit(code ?? 1)
})
