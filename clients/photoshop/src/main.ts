// The Photoshop entrypoint: the panel over host/photoshop.ts.
import * as photoshop from 'photoshop';
import { PhotoshopHost } from './host/photoshop.ts';
import { startPanel } from './ui/panel.ts';

startPanel(document.getElementById('app')!, new PhotoshopHost(photoshop));
