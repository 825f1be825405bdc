"""Finding labelled cell images in a folder and checking them before work starts.

Layouts understood by :func:`scan` and :func:`discover` (they may be mixed under one root):

C-NMC 2019
    ``.../training_data/fold_<N>/{all,hem}/UID_<subject>_<image>_<cell>_{all,hem}.bmp``.
    Label and subject come from the file name, the fold from the ``fold_<N>`` folder.
    Subject ids are case-insensitive (the real release has both ``h3`` and ``H3``); they
    are stored lower-cased. Subjects starting with ``h`` are healthy donors.
C-NMC preliminary test
    ``C-NMC_test_prelim_phase_data/<n>.bmp`` with ``C-NMC_test_prelim_phase_data_labels.csv``
    beside the folder (columns ``Patient_ID`` = original ``UID_...`` name, ``new_names`` =
    file name, ``labels`` = 1 for ALL, 0 for HEM). Without the CSV the files are listed
    with no label, which is reported.
Plain class folders
    ``<root>/<class>/*`` (any depth below the class folder). Class folder names map
    case-insensitively: ``all``, ``blast``, ``blasts``, ``leukemia``, ``leukaemia`` -> ALL;
    ``hem``, ``normal``, ``healthy`` -> HEM; other names through a class mapping
    (``classes=`` of :func:`scan` and :func:`discover`, e.g. ``"blast=ALL,normal=HEM"``,
    see :func:`parse_class_map`). An optional ``subjects.csv`` at the root with columns
    ``file`` (path relative to the root, or bare file name) and ``subject`` maps files to
    subjects (an empty cell is an error naming its line); without it each image is its
    own subject, and the report warns.

Problems are collected, never raised one by one: unreadable files, unknown class folders,
files with no label, duplicate files (same bytes), an empty root, a single class. Reports
group repeated problems into one line with a count and a few examples.
:func:`discover` raises one :class:`~allnet_core.errors.DatasetError` listing every error;
:func:`scan` returns them in a :class:`DatasetReport` for ``allnet data check``.

Modules
-------
:mod:`~allnet_core.datasets.layouts`
    The names: C-NMC file names, class folders, ``fold_<N>``, ``subjects.csv``, the
    preliminary-test labels CSV.
:mod:`~allnet_core.datasets.scanning`
    :func:`scan` and :func:`discover`.
:mod:`~allnet_core.datasets.report`
    :class:`Problem` and :class:`DatasetReport`.
:mod:`~allnet_core.datasets.listing`
    :func:`compare_with_listing`: a folder against an official sha256 listing.
"""

from allnet_core.datasets.layouts import class_of_folder, parse_class_map, parse_cnmc_name
from allnet_core.datasets.listing import compare_with_listing, read_listing
from allnet_core.datasets.report import DatasetReport, Problem, group_problems
from allnet_core.datasets.scanning import COLUMNS, discover, scan
from allnet_core.datasets.table import as_table

__all__ = [
    "COLUMNS",
    "DatasetReport",
    "Problem",
    "as_table",
    "class_of_folder",
    "compare_with_listing",
    "discover",
    "group_problems",
    "parse_class_map",
    "parse_cnmc_name",
    "read_listing",
    "scan",
]
