# Injected into every package of the ros2_control build (-DCMAKE_PROJECT_INCLUDE=this file) by
# scripts/ros2_control/build.sh. Only for ROS 2 from PyPI wheels; never used with an apt ROS 2.
#
# The wheels' exported CMake targets name paths of the machine that built them:
#   - /opt/python/cp311-cp311/include/python3.11 and a NumPy include under it
#     (INTERFACE_INCLUDE_DIRECTORIES of every rosidl_generator_py target): CMake refuses to
#     generate with an imported target that includes a non-existent path;
#   - /usr/lib64/libtinyxml2.so (fastdds-shared-targets.cmake): the link fails.
# At the end of the top-level directory's configure (a deferred call, so after every
# find_package of the package), every imported target of every directory gets those paths
# replaced by this machine's (DP_PYTHON_INCLUDE_DIRS, DP_TINYXML2_LIBRARY from build.sh). Paths
# that exist are never touched, so the file is a no-op where the wheels' paths happen to exist.
if(DEFINED _DP_WHEEL_FIXUPS_INCLUDED)
  return()   # CMAKE_PROJECT_INCLUDE runs after every project(); one deferred call is enough
endif()
set(_DP_WHEEL_FIXUPS_INCLUDED TRUE)

function(_dp_fix_target _t)
  get_target_property(_dirs ${_t} INTERFACE_INCLUDE_DIRECTORIES)
  if(_dirs)
    set(_new "")
    set(_changed FALSE)
    foreach(_d IN LISTS _dirs)
      if(NOT _d MATCHES "^\\$<" AND NOT EXISTS "${_d}" AND _d MATCHES "python|numpy")
        set(_changed TRUE)
        list(APPEND _new ${DP_PYTHON_INCLUDE_DIRS})
      else()
        list(APPEND _new "${_d}")
      endif()
    endforeach()
    if(_changed)
      list(REMOVE_DUPLICATES _new)
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
    endif()
  endif()
  foreach(_prop INTERFACE_LINK_LIBRARIES IMPORTED_LOCATION IMPORTED_LOCATION_RELEASE
                IMPORTED_LOCATION_NONE IMPORTED_LINK_DEPENDENT_LIBRARIES
                IMPORTED_LINK_DEPENDENT_LIBRARIES_RELEASE IMPORTED_LINK_DEPENDENT_LIBRARIES_NONE)
    get_target_property(_libs ${_t} ${_prop})
    if(_libs AND "${_libs}" MATCHES "/usr/lib64/libtinyxml2\\.so" AND NOT EXISTS "/usr/lib64/libtinyxml2.so")
      string(REPLACE "/usr/lib64/libtinyxml2.so" "${DP_TINYXML2_LIBRARY}" _libs "${_libs}")
      set_target_properties(${_t} PROPERTIES ${_prop} "${_libs}")
    endif()
  endforeach()
endfunction()

function(_dp_fix_directory _dir)
  get_directory_property(_targets DIRECTORY "${_dir}" IMPORTED_TARGETS)
  foreach(_t IN LISTS _targets)
    if(TARGET ${_t})   # targets imported in a subdirectory are not visible from the top
      _dp_fix_target(${_t})
    endif()
  endforeach()
  get_directory_property(_subdirs DIRECTORY "${_dir}" SUBDIRECTORIES)
  foreach(_s IN LISTS _subdirs)
    _dp_fix_directory("${_s}")
  endforeach()
endfunction()

function(_dp_fix_wheel_targets)
  _dp_fix_directory("${CMAKE_SOURCE_DIR}")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _dp_fix_wheel_targets)
