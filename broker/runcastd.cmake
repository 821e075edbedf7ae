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
  # `cmake --install`: the daemon, the sample configuration and the systemd
  # unit (deploy/runcastd.service.in, with these paths).
  include(GNUInstallDirs)
  install(TARGETS runcastd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/runcast.conf
    DESTINATION ${CMAKE_INSTALL_DATADIR}/runcast)
  set(RC_RUNCASTD_PATH ${CMAKE_INSTALL_FULL_BINDIR}/runcastd)
  set(RC_CONF_PATH ${CMAKE_INSTALL_FULL_SYSCONFDIR}/runcast/runcast.conf)
  set(RC_CONF_SAMPLE ${CMAKE_INSTALL_FULL_DATADIR}/runcast/runcast.conf)
  configure_file(${PROJECT_SOURCE_DIR}/deploy/runcastd.service.in
    ${PROJECT_BINARY_DIR}/deploy/runcastd.service @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/deploy/runcastd.service
    DESTINATION lib/systemd/system)
endif()
