// Test support shared by the server suite (__test__/) and the client suite (client/test/).
export * from './clients'
export * from './frames'
export * from './http'
export * from './processes'
export * from './proxy'
export * from './redis'
export * from './servers'
export * from './waits'
