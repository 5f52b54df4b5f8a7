/**
 * Real Perl for the interop tests: a few lines of Perl run with Cache::Memcached, Storable and
 * JSON, exactly as Apache::Session::Memorycached, Apache::Session::Serialize::JSON and
 * Lemonldap::NG call them. Each run has a deadline and is killed past it.
 */
import { spawn, spawnSync } from 'node:child_process'

/** The Perl modules the interop tests use, and the Debian packages that bring them. */
export const PERL_MODULES = ['Cache::Memcached', 'Storable', 'JSON', 'JSON::PP', 'Digest::MD5', 'Apache::Session::Serialize::JSON']
const INSTALL = 'apt-get install -y libcache-memcached-perl libapache-session-perl libapache-session-browseable-perl libjson-perl'

let checked = false
/** Throws, saying how to install them, when perl or one of {@link PERL_MODULES} is missing: these tests never skip. */
export function requirePerl(): void {
  if (checked) return
  const r = spawnSync('perl', [...PERL_MODULES.map((m) => `-M${m}`), '-e', '1'], { encoding: 'utf8', timeout: 10_000 })
  if (r.status !== 0) {
    throw new Error(
      `the Perl interop tests need perl with ${PERL_MODULES.join(', ')}: ${(r.stderr || String(r.error)).split('\n')[0]}\n` +
        `Install them: ${INSTALL} (Debian/Ubuntu; \`npm test\` installs them when run as root with apt-get).`,
    )
  }
  checked = true
}

/** What every script starts with: strict, UTF-8 source, the modules, and `out(...)`, which prints canonical ASCII JSON. */
const PRELUDE = `use strict; use warnings; use utf8;
use Cache::Memcached; use Storable qw(nfreeze thaw); use JSON (); use JSON::PP (); use Digest::MD5 qw(md5_hex);
use Apache::Session::Serialize::JSON ();
my $J = JSON::PP->new->canonical->ascii->allow_nonref->allow_blessed->convert_blessed;
sub out { print $J->encode($_[0]), "\\n" }
sub args { JSON::PP->new->utf8->decode($ARGV[0]) }
`

/**
 * Runs `script` (after the prelude) with `args` as JSON in `$ARGV[0]` (read with `args()`), and
 * resolves with its output parsed as JSON (the last line). Rejects with Perl's stderr when it
 * dies, and kills it past `timeoutMs`.
 */
export function perl<T = unknown>(script: string, args: unknown = null, timeoutMs = 20_000): Promise<T> {
  requirePerl()
  return new Promise((resolve, reject) => {
    const child = spawn('perl', ['-e', PRELUDE + script, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (code !== 0) return reject(new Error(`perl exited ${code ?? signal}: ${stderr}`))
      const last = stdout.trim().split('\n').pop() ?? 'null'
      try {
        resolve(JSON.parse(last) as T)
      } catch {
        reject(new Error(`perl printed no JSON: ${stdout} ${stderr}`))
      }
    })
  })
}
