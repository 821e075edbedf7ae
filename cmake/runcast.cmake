# Helpers shared by every CMakeLists.txt in the tree: compiler flags,
# sanitizers (in one place), and small functions for libraries, programs,
# tests and benchmarks.

set(RC_WARNINGS -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter)
add_compile_definitions(_GNU_SOURCE RUNCAST_VERSION="${PROJECT_VERSION}")

if(RUNCAST_SANITIZE STREQUAL "address")
  set(RC_SAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
elseif(RUNCAST_SANITIZE STREQUAL "thread")
  set(RC_SAN_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT RUNCAST_SANITIZE STREQUAL "")
  message(FATAL_ERROR "RUNCAST_SANITIZE must be '', 'address' or 'thread'")
endif()
if(RC_SAN_FLAGS)
  add_compile_options(${RC_SAN_FLAGS} -g)
  add_link_options(${RC_SAN_FLAGS})
endif()

# jemalloc is the process allocator of the programs; sanitizers bring their
# own allocator, so sanitized builds leave it out (rc_alloc_stats then
# reports RC_ENOTSUP).
if(RC_SAN_FLAGS)
  set(RC_USE_JEMALLOC OFF)
else()
  set(RC_USE_JEMALLOC ON)
endif()

# rc_add_library(NAME SOURCES ... LIBS ...)
function(rc_add_library name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${RC_WARNINGS})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${A_LIBS})
endfunction()

# rc_add_program(NAME SOURCES ... LIBS ...): an executable; links jemalloc as
# the process allocator unless this is a sanitizer build.
function(rc_add_program name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${RC_WARNINGS})
  target_link_libraries(${name} PRIVATE ${A_LIBS})
  if(RC_USE_JEMALLOC)
    target_link_libraries(${name} PRIVATE PkgConfig::JEMALLOC)
    target_compile_definitions(${name} PRIVATE RC_HAVE_JEMALLOC=1)
  endif()
endfunction()

# In TSan builds every test runs with the options of .ci/run.  Tests whose
# processes only talk to each other through sockets (a test and the runcastd
# it spawns) add nng's suppressions, tests/tsan.supp, with rc_tsan_supp();
# a process that synchronises its own threads through nng must not: ignoring
# libnng's interceptors hides that synchronisation and reports false races.
if(RUNCAST_SANITIZE STREQUAL "thread")
  set(RC_TSAN_TEST_ENV "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:die_after_fork=0")
else()
  set(RC_TSAN_TEST_ENV "")
endif()
# In ASan builds every test process reads tests/lsan.supp (leaks inside nng
# and Criterion, each explained there); runcastd started by a test does not.
if(RUNCAST_SANITIZE STREQUAL "address")
  set(RC_ASAN_TEST_ENV "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp")
else()
  set(RC_ASAN_TEST_ENV "")
endif()

# rc_add_test(NAME LABEL unit|integration|stress SOURCES ... LIBS ... [TIMEOUT s])
# A Criterion executable registered with CTest.
function(rc_add_test name)
  cmake_parse_arguments(A "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${RC_WARNINGS})
  if(RUNCAST_SANITIZE STREQUAL "thread")
    # Criterion cannot start under TSan (its sandbox arena collides with
    # TSan's shadow ranges): the TSan build runs the same sources on a
    # small stand-in, tests/support/criterion/criterion.h.
    target_include_directories(${name} BEFORE PRIVATE ${PROJECT_SOURCE_DIR}/tests/support)
    target_link_libraries(${name} PRIVATE ${A_LIBS} rc_criterion_shim Threads::Threads)
  else()
    target_link_libraries(${name} PRIVATE ${A_LIBS} PkgConfig::CRITERION Threads::Threads)
  endif()
  target_compile_definitions(${name} PRIVATE
    RC_SOURCE_DIR="${PROJECT_SOURCE_DIR}" RC_BINARY_DIR="${PROJECT_BINARY_DIR}")
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  add_test(NAME ${name} COMMAND ${name} --jobs 2 --timeout ${A_TIMEOUT})
  set_tests_properties(${name} PROPERTIES LABELS "${A_LABEL}" TIMEOUT ${A_TIMEOUT})
  if(RC_TSAN_TEST_ENV)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${RC_TSAN_TEST_ENV}")
  elseif(RC_ASAN_TEST_ENV)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${RC_ASAN_TEST_ENV}")
  endif()
endfunction()

# rc_tsan_supp(TEST): in TSan builds, run TEST (and what it spawns) with
# tests/tsan.supp.
function(rc_tsan_supp name)
  if(RC_TSAN_TEST_ENV)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT
      "${RC_TSAN_TEST_ENV}:suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp")
  endif()
endfunction()

# rc_tsan_supp_file(TEST FILE): in TSan builds, run TEST with the
# suppressions in FILE (tests/FILE says what it silences and why).
function(rc_tsan_supp_file name file)
  if(RC_TSAN_TEST_ENV)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT
      "${RC_TSAN_TEST_ENV}:suppressions=${PROJECT_SOURCE_DIR}/tests/${file}")
  endif()
endfunction()

# rc_add_test_variant(TEST SUFFIX LABEL TIMEOUT ENV): TEST's executable run
# once more as TEST_SUFFIX with ENV set (a second configuration of the same
# tests, e.g. the nng PULL socket instead of the stream reader), with the
# sanitizer environment and tests/tsan.supp as rc_tsan_supp gives TEST.
function(rc_add_test_variant name suffix label timeout env)
  add_test(NAME ${name}_${suffix} COMMAND ${name} --jobs 2 --timeout ${timeout})
  set(e "${env}")
  if(RC_TSAN_TEST_ENV)
    set(e "${e};${RC_TSAN_TEST_ENV}:suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp")
  elseif(RC_ASAN_TEST_ENV)
    set(e "${e};${RC_ASAN_TEST_ENV}")
  endif()
  set_tests_properties(${name}_${suffix} PROPERTIES LABELS "${label}" TIMEOUT ${timeout}
    ENVIRONMENT "${e}")
endfunction()

# rc_add_script_test(NAME LABEL ... COMMAND ...): a test driven by a script
# (Python or Node.js third-party clients) against the built programs.
function(rc_add_script_test name)
  cmake_parse_arguments(A "" "LABEL;TIMEOUT" "COMMAND" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  add_test(NAME ${name} COMMAND ${A_COMMAND})
  set_tests_properties(${name} PROPERTIES LABELS "${A_LABEL}" TIMEOUT ${A_TIMEOUT}
    ENVIRONMENT "RC_BINARY_DIR=${PROJECT_BINARY_DIR};RC_SOURCE_DIR=${PROJECT_SOURCE_DIR};${RC_TSAN_TEST_ENV}")
endfunction()

# rc_add_bench(NAME SOURCES ... LIBS ...): a micro-benchmark program.
function(rc_add_bench name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS" ${ARGN})
  rc_add_program(${name} SOURCES ${A_SOURCES} LIBS ${A_LIBS} Threads::Threads)
endfunction()
