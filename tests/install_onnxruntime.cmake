# ctest's fixture onnxruntime_npm (CMakeLists.txt): installs ONNX Runtime for Node.js into NPM_PREFIX (the
# build tree) unless that exact version is already there. --ignore-scripts: the package ships its Linux x64
# library, and its install script would only download extras (and fails offline).
set(version 1.30.0)
set(manifest "${NPM_PREFIX}/node_modules/onnxruntime-node/package.json")
if(EXISTS "${manifest}")
  file(READ "${manifest}" text)
  string(JSON installed GET "${text}" version)
  if(installed STREQUAL version)
    message(STATUS "onnxruntime-node ${version} already in ${NPM_PREFIX}")
    return()
  endif()
endif()
find_program(NPM npm)
if(NOT NPM)
  message(FATAL_ERROR "npm not found: test_onnx_export runs ONNX Runtime from the npm package onnxruntime-node "
                      "(Node.js and npm must be on PATH)")
endif()
file(MAKE_DIRECTORY "${NPM_PREFIX}")
execute_process(COMMAND "${NPM}" install --ignore-scripts --no-audit --no-fund --prefix "${NPM_PREFIX}"
                        "onnxruntime-node@${version}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "npm install --ignore-scripts onnxruntime-node@${version} into ${NPM_PREFIX} failed (exit ${rc})")
endif()
