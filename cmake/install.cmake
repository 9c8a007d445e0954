# Install rules, the CMake package, the pkg-config files and the Debian package
# (CPack). Included by the top-level CMakeLists.txt when FLOWBUS_INSTALL is on.
#
#   include/flowbus/*.hpp, flowbus/detail/*.hpp   the C++ API (flowbus/flowbus.hpp: all of it)
#   include/flowbus/version.hpp                   generated from the project() version
#   include/flowbus.h                             the C ABI
#   <libdir>/libflowbus.so.<ABI>, libflowbus.a    flowbus::flowbus, flowbus::flowbus_static
#   <libdir>/libflowbus-c.so.<ABI>, libflowbus-c.a flowbus::c, flowbus::c_static
#   <libdir>/cmake/flowbus/                       find_package(flowbus 0.2 CONFIG)
#   <libdir>/pkgconfig/flowbus.pc, flowbus-c.pc
#   bin/flowbus                                   the command line (FLOWBUS_BUILD_TOOLS)
#   share/flowbus/schemas/examples/*.fbs          the example schemas
#   share/doc/flowbus/                            copyright, changelog.gz
#   share/man/man1/flowbus.1.gz                   the command line's manual page (FLOWBUS_BUILD_TOOLS)
#   lib/python3/dist-packages/flowbus/            the Python package (bindings/python/CMakeLists.txt, when built)
include(CMakePackageConfigHelpers)

set(FLOWBUS_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/flowbus)
set(FLOWBUS_INSTALL_SCHEMADIR ${CMAKE_INSTALL_DATADIR}/flowbus/schemas)

install(TARGETS flowbus_shared flowbus_static flowbus_c_shared flowbus_c_static
        EXPORT flowbusTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
# Every public header, detail/ included: publisher.hpp and subscriber.hpp
# include flowbus/detail/ring.hpp (inline hot path), which includes layout.hpp
# and platform.hpp.
install(DIRECTORY core/include/flowbus DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.hpp")
install(FILES ${PROJECT_BINARY_DIR}/include/flowbus/version.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/flowbus)
install(FILES bindings/c/flowbus.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(FLOWBUS_BUILD_TOOLS)
  install(TARGETS flowbus RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
# order_bad.fbs is a test fixture, not an example.
install(FILES schemas/examples/sensor.fbs schemas/examples/order.fbs schemas/examples/order_v2.fbs
        DESTINATION ${FLOWBUS_INSTALL_SCHEMADIR}/examples)

# --- CMake package: find_package(flowbus 0.2 CONFIG REQUIRED) ------------------
# SameMinorVersion: 0.2.x satisfies a request for 0.2 (or 0.2.y, y <= x), never
# 0.1 or 0.3, as the ABI version (SONAME) says while the major version is 0.
install(EXPORT flowbusTargets NAMESPACE flowbus:: DESTINATION ${FLOWBUS_INSTALL_CMAKEDIR})
configure_package_config_file(cmake/flowbusConfig.cmake.in ${PROJECT_BINARY_DIR}/flowbusConfig.cmake
  INSTALL_DESTINATION ${FLOWBUS_INSTALL_CMAKEDIR}
  PATH_VARS FLOWBUS_INSTALL_SCHEMADIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/flowbusConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/flowbusConfig.cmake ${PROJECT_BINARY_DIR}/flowbusConfigVersion.cmake
        DESTINATION ${FLOWBUS_INSTALL_CMAKEDIR})

# --- pkg-config: flowbus.pc (C++), flowbus-c.pc (C) ----------------------------
# Written at install time, with the prefix installed to: right for
# `cmake --install build --prefix P` as for the .deb (prefix /usr).
foreach(dir LIBDIR INCLUDEDIR DATADIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(FLOWBUS_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(FLOWBUS_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
set(prefix "@prefix@")  # kept for the install-time pass
foreach(pc flowbus flowbus-c)
  configure_file(cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc.in @ONLY)
endforeach()
unset(prefix)
configure_file(cmake/install_pkgconfig.cmake.in ${PROJECT_BINARY_DIR}/pkgconfig/install_pkgconfig.cmake @ONLY)
install(SCRIPT ${PROJECT_BINARY_DIR}/pkgconfig/install_pkgconfig.cmake)

# --- share/doc/flowbus: copyright and changelog (Debian wants both) --------------
string(TIMESTAMP FLOWBUS_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)  # honours SOURCE_DATE_EPOCH
set(FLOWBUS_PACKAGE_MAINTAINER "flowbus maintainers <maintainers@users.noreply.r-seed-a62cbe0f.example>"
    CACHE STRING "Maintainer of the .deb (Debian 'Name <email>')")
configure_file(packaging/changelog.in ${PROJECT_BINARY_DIR}/packaging/changelog @ONLY)
find_program(GZIP_EXECUTABLE gzip REQUIRED)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/packaging/changelog.gz
  COMMAND ${GZIP_EXECUTABLE} -9 -n -c ${PROJECT_BINARY_DIR}/packaging/changelog > ${PROJECT_BINARY_DIR}/packaging/changelog.gz
  DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog VERBATIM)
add_custom_target(flowbus_changelog ALL DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog.gz)
install(FILES packaging/copyright ${PROJECT_BINARY_DIR}/packaging/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})
if(FLOWBUS_BUILD_TOOLS)  # the CLI's manual page: what it is, its subcommands; --help says the rest
  configure_file(packaging/flowbus.1.in ${PROJECT_BINARY_DIR}/packaging/flowbus.1 @ONLY)
  add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/packaging/flowbus.1.gz
    COMMAND ${GZIP_EXECUTABLE} -9 -n -c ${PROJECT_BINARY_DIR}/packaging/flowbus.1 > ${PROJECT_BINARY_DIR}/packaging/flowbus.1.gz
    DEPENDS ${PROJECT_BINARY_DIR}/packaging/flowbus.1 VERBATIM)
  add_custom_target(flowbus_manpage ALL DEPENDS ${PROJECT_BINARY_DIR}/packaging/flowbus.1.gz)
  install(FILES ${PROJECT_BINARY_DIR}/packaging/flowbus.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()

# --- the Debian package: `make package`, or cpack in the build directory ---------
# One package, flowbus_<version>_<arch>.deb: libraries, headers, CMake and
# pkg-config files, the CLI, the example schemas. Its Depends come from
# dpkg-shlibdeps; FlatBuffers' headers and CMake package (libflatbuffers-dev),
# which C++ users need, are Recommends: C users and the CLI do without.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME flowbus)
set(CPACK_PACKAGE_VENDOR "flowbus")
set(CPACK_PACKAGE_CONTACT "${FLOWBUS_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION "Producers publish FlatBuffers events on named topics; consumers on the same
host read them in place, straight out of shared memory: no copy, no syscall,
no lock on the hot path. Every event is a CloudEvent.
.
This package holds the C++ library (libflowbus) and the C ABI over it
(libflowbus-c), shared and static, their headers, CMake package and
pkg-config files, the flowbus command line, the example schemas and, when
built, the Python package flowbus (for Debian's python3).")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libflatbuffers-dev")
# The Python package's extension is built for one python3 minor version (its
# ABI tag): the package depends on that python3, as Debian's python3-* do.
# dpkg-shlibdeps appends the libraries' dependencies to these.
if(TARGET flowbus_python)
  math(EXPR FLOWBUS_PYTHON_NEXT_MINOR "${Python3_VERSION_MINOR} + 1")
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "python3 (>= ${Python3_VERSION_MAJOR}.${Python3_VERSION_MINOR}~), python3 (<< ${Python3_VERSION_MAJOR}.${FLOWBUS_PYTHON_NEXT_MINOR})")
endif()
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# ldconfig runs through its trigger (CPack's postinst/postrm call it as well).
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/packaging/triggers)
# cpack packages what is built: it does not build `all` first (its preinstall
# step would otherwise rebuild the tree it reads). `make package` builds first.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
include(CPack)
