"""`pytest harness/` runs the scenario suite; its options and fixtures live in plugin.py."""

from harness.plugin import (  # noqa: F401  (pytest finds hooks and fixtures by name)
    _kernel_built_first,
    _shared_guest_properties,
    built_debug_kernel,
    built_kernel,
    evidence,
    pipeline,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_generate_tests,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_terminal_summary,
    record_fault_rate,
    record_measurement,
    release_mib,
    results_dir,
)
