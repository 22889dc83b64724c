"""The case studies, as the package ships them (``examples/`` in the repository is the
same directory): ``fluentfn demo`` and ``fluentfn bench`` import them from here, so they
work from an installed wheel, not only from a checkout."""
