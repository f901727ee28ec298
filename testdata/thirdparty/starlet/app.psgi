# A PSGI app as Plack's users write one, run with `plackup -s Starlet`.
# Its release directory holds a VERSION file and, in a bad release, a file
# named UNHEALTHY: / still answers, /healthz answers 500.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);

# abs_path resolves the current symlink: this is the release being started.
my $dir = dirname(abs_path(__FILE__));
open my $fh, '<', "$dir/VERSION" or die "open $dir/VERSION: $!";
chomp(my $version = <$fh>);
close $fh;
my $unhealthy = -e "$dir/UNHEALTHY";

my $app = sub {
    my $env = shift;
    my @headers = ('Content-Type' => 'text/plain', 'X-Version' => $version);
    if ($env->{PATH_INFO} eq '/healthz') {
        return [500, \@headers, ["unhealthy\n"]] if $unhealthy;
        return [200, \@headers, ["ok\n"]];
    }
    my $n = 0;
    while (my $got = $env->{'psgi.input'}->read(my $buf, 8192)) {
        $n += $got;
    }
    return [200, \@headers, ["$version $env->{REQUEST_METHOD} $n\n"]];
};
