#!/usr/bin/perl
# The speed anchor of the file store benchmark: Perl's Cache::FastMmap (the store behind
# Catalyst's FastMmap sessions), doing the benchmark's cycle on the same sessions. Usage:
#   perl fastmmap.pl <share file> <sessions file: one "id<TAB>json" a line> <write|read> <ms>
# Prints {"cycles":N,"ms":M}. write: get, read 3 fields, set 1 nested field, set (FastMmap's
# default serializer, Storable, as Catalyst uses it); read: get and read 3 fields.
use strict;
use warnings;
use Cache::FastMmap;
use JSON::PP ();
use Time::HiRes ();

my ($share, $sessions, $mode, $ms) = @ARGV;
my $cache = Cache::FastMmap->new(share_file => $share, init_file => 0, expire_time => 86400, cache_size => '4m');
my @ids;
open(my $fh, '<', $sessions) or die "$sessions: $!";
while (my $line = <$fh>) {
  chomp $line;
  my ($id, $json) = split /\t/, $line, 2;
  push @ids, $id;
  $cache->set($id, JSON::PP::decode_json($json)) unless $cache->get($id);
}
close $fh;

my ($cycles, $sink) = (0, 0);
my $start = Time::HiRes::time();
my $end = $start + $ms / 1000;
while (Time::HiRes::time() < $end) {
  my $id = $ids[$cycles % @ids];
  my $s = $cache->get($id);
  $sink += length($s->{uid}) + length($s->{email}) + length($s->{prefs}{theme});
  if ($mode eq 'write') {
    $s->{cart}{updated} = $cycles;
    $cache->set($id, $s);
  }
  $cycles++;
}
printf "{\"cycles\":%d,\"ms\":%.3f}\n", $cycles, (Time::HiRes::time() - $start) * 1000;
