# runcastd: the daemon.  Included by broker/CMakeLists.txt after the parts.
if(TARGET runcast_core)
  set(RC_RUNCASTD_LIBS runcast_core runcast_proto runcast_actors runcast_config runcast_common
      nng::nng Threads::Threads)
  if(TARGET runcast_edge)
    list(PREPEND RC_RUNCASTD_LIBS runcast_edge)
  endif()
  rc_add_program(runcastd SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/runcastd.c LIBS ${RC_RUNCASTD_LIBS})
  if(TARGET runcast_edge)
    target_compile_definitions(runcastd PRIVATE RC_HAVE_EDGE=1)
  endif()
endif()
